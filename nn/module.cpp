#include "nn/module.h"

#include <set>

#include "tensor/error.h"

namespace pt::nn {

namespace {
std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// Floating tensors convert into each other; anything else must match exactly.
bool dtype_compatible(DType dst, DType src) { return dst == src || (is_floating(dst) && is_floating(src)); }

// A parameter without data is a Linear weight released for a packed kernel (nn/linear.h): reading or moving it
// would silently skip it, so the operations that need every parameter say so instead.
void check_has_data(const std::string& name, const Variable& p, const char* op) {
  PT_CHECK(p.data().defined(), "Module::", op, ": parameter ", name, " holds no data: its dense weight was released "
           "while a packed sparse kernel runs the layer; restore it first (nn::clear_linear_kernels, or "
           "Linear::restore_dense_weight)");
}

// Where a freshly created buffer of `owner` should live: beside the owner's parameters.
Device device_of(const Module& owner) {
  auto params = owner.parameters();
  return params.empty() ? Device::cpu : params.front()->device();
}
}  // namespace

// ---- registration -------------------------------------------------------------------------------

void Module::check_new_name(const std::string& name, bool allow_dots) const {
  PT_CHECK(!name.empty(), "Module: cannot register an empty name");
  PT_CHECK(allow_dots || name.find('.') == std::string::npos, "Module: name '", name,
           "' must not contain '.' (dots separate module levels)");
  auto taken = [&](const auto& list) {
    for (auto& [n, _] : list)
      if (n == name) return true;
    return false;
  };
  PT_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_), "Module: name '", name,
           "' is already registered in this module");
}

void Module::register_parameter(const std::string& name, Variable* parameter) {
  check_new_name(name, false);
  PT_CHECK(parameter && parameter->defined(), "Module::register_parameter: '", name, "' is not a defined Variable");
  if (parameter->name().empty()) parameter->set_name(name);
  params_.emplace_back(name, parameter);
}

void Module::unregister_parameter(const std::string& name) {
  for (auto it = params_.begin(); it != params_.end(); ++it)
    if (it->first == name) {
      params_.erase(it);
      return;
    }
  PT_FAIL("Module::unregister_parameter: no parameter '", name, "' in this module");
}

void Module::register_buffer(const std::string& name, Tensor* buffer) {
  check_new_name(name, false);
  PT_CHECK(buffer, "Module::register_buffer: '", name, "' is a null pointer");
  buffers_.emplace_back(name, buffer);
}

void Module::register_module(const std::string& name, Module* child) {
  check_new_name(name, true);
  PT_CHECK(child && child != this, "Module::register_module: '", name, "' is null or the module itself");
  children_.emplace_back(name, child);
}

// ---- traversal ----------------------------------------------------------------------------------

std::vector<std::pair<std::string, Variable*>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Variable*>> out(params_.begin(), params_.end());
  for (auto& [cname, child] : children_)
    for (auto& [n, p] : child->named_parameters()) out.emplace_back(join(cname, n), p);
  return out;
}

std::vector<Variable*> Module::parameters() const {
  std::vector<Variable*> out;
  for (auto& [_, p] : named_parameters()) out.push_back(p);
  return out;
}

void Module::collect_buffers(const std::string& prefix, std::vector<BufferSlot>& out, bool include_undefined) const {
  for (auto& [n, b] : buffers_)
    if (include_undefined || b->defined()) out.push_back({join(prefix, n), const_cast<Module*>(this), b});
  for (auto& [cname, child] : children_) child->collect_buffers(join(prefix, cname), out, include_undefined);
}

std::vector<std::pair<std::string, Tensor*>> Module::named_buffers() const {
  std::vector<BufferSlot> slots;
  collect_buffers("", slots, false);
  std::vector<std::pair<std::string, Tensor*>> out;
  for (auto& s : slots) out.emplace_back(s.name, s.tensor);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, Module*>> out;
  for (auto& [cname, child] : children_) {
    out.emplace_back(cname, child);
    for (auto& [n, m] : child->named_modules()) out.emplace_back(join(cname, n), m);
  }
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, p] : named_parameters()) {
    check_has_data(name, *p, "num_parameters");
    n += p->data().numel();
  }
  return n;
}

// ---- modes and placement ------------------------------------------------------------------------

void Module::train(bool on) {
  training_ = on;
  for (auto& [_, child] : children_) child->train(on);
}

void Module::to(Device device) {
  for (auto& [name, p] : named_parameters()) check_has_data(name, *p, "to");
  for (auto* p : parameters()) {
    Tensor g = p->grad();
    p->data() = p->data().to(device);
    if (g.defined()) p->set_grad(g.to(device));
  }
  for (auto& [_, b] : named_buffers()) *b = b->to(device);
}

void Module::to(DType dtype) {
  PT_CHECK(is_floating(dtype), "Module::to: parameters can only become a floating dtype, not ", dtype_name(dtype));
  for (auto& [name, p] : named_parameters()) check_has_data(name, *p, "to");
  for (auto* p : parameters()) {
    Tensor g = p->grad();
    p->data() = p->data().to(dtype);
    if (g.defined()) p->set_grad(g.to(dtype));
  }
  for (auto& [_, b] : named_buffers())
    if (is_floating(b->dtype())) *b = b->to(dtype);
}

void Module::zero_grad() {
  for (auto* p : parameters()) p->zero_grad();
}

// ---- state dict ---------------------------------------------------------------------------------

std::map<std::string, Tensor> Module::state_dict() const {
  std::map<std::string, Tensor> out;
  for (auto& [n, p] : named_parameters()) {
    check_has_data(n, *p, "state_dict");
    out.emplace(n, p->data());
  }
  for (auto& [n, b] : named_buffers()) out.emplace(n, *b);
  return out;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& tensors, bool strict) {
  std::vector<BufferSlot> buffers;
  collect_buffers("", buffers, true);
  const auto params = named_parameters();

  // Validate everything first, so a failing load leaves the module untouched.
  std::set<std::string> known;
  auto check = [&](const std::string& name, const Tensor& dst, bool optional) {
    known.insert(name);
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      PT_CHECK(!strict || optional, "load_state_dict: missing tensor ", name);
      return;
    }
    const Tensor& src = it->second;
    PT_CHECK(src.defined(), "load_state_dict: tensor ", name, " is undefined");
    if (!dst.defined()) return;  // an absent optional buffer takes whatever comes
    PT_CHECK(src.shape() == dst.shape(), "load_state_dict: tensor ", name, ": expected shape ", shape_str(dst.shape()),
             " but found ", shape_str(src.shape()));
    PT_CHECK(dtype_compatible(dst.dtype(), src.dtype()), "load_state_dict: tensor ", name, ": expected dtype ",
             dtype_name(dst.dtype()), " but found ", dtype_name(src.dtype()));
  };
  for (auto& [n, p] : params) {
    check_has_data(n, *p, "load_state_dict");
    check(n, p->data(), false);
  }
  for (auto& b : buffers) check(b.name, *b.tensor, !b.tensor->defined());
  if (strict)
    for (auto& [n, _] : tensors) PT_CHECK(known.count(n), "load_state_dict: unexpected tensor ", n);

  for (auto& [n, p] : params) {
    auto it = tensors.find(n);
    if (it != tensors.end()) p->data().copy_(it->second);
  }
  for (auto& b : buffers) {
    auto it = tensors.find(b.name);
    if (it == tensors.end()) continue;
    if (b.tensor->defined()) b.tensor->copy_(it->second);
    else {
      const Tensor& src = it->second;
      Tensor fresh = Tensor::empty(src.shape(), src.dtype(), device_of(*b.owner));
      fresh.copy_(src);
      *b.tensor = fresh;
    }
  }
}

}  // namespace pt::nn
