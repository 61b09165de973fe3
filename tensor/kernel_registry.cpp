// The kernel registry: variant lookup, the run-time selection and the shorthand.
#include "tensor/kernel_registry.h"

#include <algorithm>

namespace pt::kernels {

namespace {
std::string g_shorthand = "fused";
}

int64_t Problem::dim(const std::string& name) const {
  for (const auto& [n, v] : dims)
    if (n == name) return v;
  PT_FAIL("kernel problem '", label(), "' has no size named '", name, "'");
}

std::string Problem::label() const {
  std::string s = shape_class;
  for (const auto& [n, v] : dims) s += " " + n + "=" + std::to_string(v);
  if (!pattern.empty()) s += " " + pattern;
  return s + " " + dtype_name(dtype);
}

bool VariantInfo::runs_on(Device d) const { return std::find(devices.begin(), devices.end(), d) != devices.end(); }

bool VariantInfo::takes(const Problem& p) const {
  if (std::find(dtypes.begin(), dtypes.end(), p.dtype) == dtypes.end()) return false;
  return !accepts || accepts(p);
}

std::string join(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

std::vector<const VariantInfo*> FamilyBase::variants() const {
  std::vector<const VariantInfo*> out;
  for (const auto& i : infos_) out.push_back(i.get());
  return out;
}

const VariantInfo* FamilyBase::find(const std::string& variant) const {
  for (const auto& i : infos_)
    if (i->name == variant) return i.get();
  return nullptr;
}

std::vector<std::string> FamilyBase::names() const {
  std::vector<std::string> out;
  for (const auto& i : infos_) out.push_back(i->name);
  return out;
}

std::vector<std::string> FamilyBase::names_on(Device d) const {
  std::vector<std::string> out;
  for (const auto& i : infos_)
    if (i->runs_on(d)) out.push_back(i->name);
  return out;
}

Cost FamilyBase::cost(const std::string& variant, const Problem& p) const {
  const VariantInfo* v = find(variant);
  PT_CHECK(v, why_not(variant, Device::cpu));
  if (v->cost) return v->cost(p);
  PT_CHECK(bool(spec_.cost), "kernel family ", name(), " has no cost model");
  return spec_.cost(p);
}

std::string FamilyBase::why_not(const std::string& variant, Device device) const {
  const VariantInfo* v = find(variant);
  if (!v)
    return unknown_variant(variant);
  if (v->runs_on(device)) return "";
  std::vector<std::string> where;
  for (Device d : v->devices) where.push_back(device_name(d));
  return pt::detail::concat("kernel family ", name(), ": variant '", variant, "' runs on ", join(where), ", not on ",
                            device_name(device), " (on ", device_name(device), ": ", join(names_on(device)), ")");
}

std::string FamilyBase::unknown_variant(const std::string& variant) const {
  return pt::detail::concat("kernel family ", name(), " has no variant '", variant, "' (registered: ", join(names()),
                            ")");
}

std::string FamilyBase::shorthand_variant(const std::string& shorthand, Device device) const {
  PT_CHECK(shorthand == "fused" || shorthand == "unfused", "kernels shorthand '", shorthand,
           "' is unknown (allowed: fused, unfused)");
  for (const std::string& n : shorthand == "fused" ? spec_.fused_order : spec_.unfused_order) {
    const VariantInfo* v = find(n);
    if (v && v->runs_on(device)) return n;
  }
  PT_FAIL("kernel family ", name(), ": no ", shorthand, " variant runs on ", device_name(device), " (on ",
          device_name(device), ": ", join(names_on(device)), ")");
}

std::string FamilyBase::resolve(Device device) const {
  return selected_.empty() ? shorthand_variant(g_shorthand, device) : selected_;
}

void FamilyBase::select(const std::string& variant) {
  PT_CHECK(variant.empty() || find(variant), unknown_variant(variant));
  selected_ = variant;
}

void FamilyBase::add_info(VariantInfo info) {
  PT_CHECK(!info.name.empty() && !find(info.name), "kernel family ", name(), ": variant '", info.name,
           "' is registered twice (or has no name)");
  PT_CHECK(!info.devices.empty() && !info.dtypes.empty(), "kernel family ", name(), ": variant '", info.name,
           "' names no device or no dtype");
  infos_.push_back(std::make_unique<VariantInfo>(std::move(info)));
}

size_t FamilyBase::index_of(const std::string& variant, Device device) const {
  const std::string problem = why_not(variant, device);
  PT_CHECK(problem.empty(), problem);
  for (size_t i = 0; i < infos_.size(); ++i)
    if (infos_[i]->name == variant) return i;
  return 0;  // unreachable: why_not found it
}

void set_shorthand(const std::string& shorthand) {
  PT_CHECK(shorthand == "fused" || shorthand == "unfused", "kernels shorthand '", shorthand,
           "' is unknown (allowed: fused, unfused)");
  g_shorthand = shorthand;
}

const std::string& shorthand() { return g_shorthand; }

ScopedSelection& ScopedSelection::add(FamilyBase& family, const std::string& variant) {
  saved_.emplace_back(&family, family.selected());
  family.select(variant);
  return *this;
}

ScopedSelection& ScopedSelection::shorthand(const std::string& s) {
  if (saved_shorthand_.empty()) saved_shorthand_ = g_shorthand;
  set_shorthand(s);
  return *this;
}

ScopedSelection::~ScopedSelection() {
  for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) it->first->select(it->second);
  if (!saved_shorthand_.empty()) g_shorthand = saved_shorthand_;
}

}  // namespace pt::kernels
