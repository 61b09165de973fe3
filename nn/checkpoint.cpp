#include "nn/checkpoint.h"

#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <new>
#include <nlohmann/json.hpp>

#include "nn/checkpoint_format.h"
#include "nn/checkpoint_stream.h"
namespace pt::nn {

const Tensor* Checkpoint::find_parameter(const std::string& name) const {
  for (const auto& [n, t] : parameters)
    if (n == name) return &t;
  return nullptr;
}

namespace {

using namespace hdf5;
using namespace ckfmt;

bool all_zero_or_one(const Tensor& mask) {
  Tensor m = mask.to(Device::cpu).contiguous();
  const uint8_t* p = m.data<uint8_t>();
  return std::all_of(p, p + m.numel(), [](uint8_t v) { return v <= 1; });
}

// Masks (u8, 0/1) and optimizer moments (floating, m and v in pairs) belong to a parameter of the same name and
// shape. Checked before saving (nothing bad reaches the disk) and after loading.
void check_consistent(const Checkpoint& c, const Where& where) {
  std::map<std::string, Shape> shapes;
  for (const auto& [name, t] : c.parameters) {
    if (!t.defined() || !is_floating(t.dtype())) where.fail("parameter '", name, "' must be a floating tensor");
    if (!shapes.emplace(name, t.shape()).second) where.fail("parameter '", name, "' appears twice");
  }
  auto must_match = [&](const char* what, const std::string& name, const Tensor& t, bool mask) {
    if (!t.defined() || (mask ? t.dtype() != DType::u8 : !is_floating(t.dtype())))
      where.fail(what, " '", name, "' must be a ", mask ? "u8" : "floating", " tensor");
    auto it = shapes.find(name);
    if (it == shapes.end()) where.fail(what, " '", name, "' has no parameter of that name");
    if (t.shape() != it->second)
      where.fail(what, " '", name, "' has shape ", shape_str(t.shape()), " but the parameter has ",
                 shape_str(it->second));
  };
  for (const auto& [name, m] : c.masks) {
    must_match("mask", name, m, true);
    if (!all_zero_or_one(m)) where.fail("mask '", name, "' holds values other than 0 and 1");
  }
  if (!c.optimizer) return;
  for (const auto& [mine, other] : {std::pair{&c.optimizer->m, &c.optimizer->v}, {&c.optimizer->v, &c.optimizer->m}})
    for (const auto& [name, t] : *mine) {
      must_match("optimizer state", name, t, false);
      if (!other->count(name)) where.fail("optimizer state '", name, "' has only one of m and v");
    }
}


// Rejects bad input before anything touches the disk.
void check_savable(const Checkpoint& c, const SaveOptions& o, const Where& where) {
  if (o.gzip_level < 0 || o.gzip_level > 9) where.fail("gzip_level must be 0..9, got ", o.gzip_level);
  for (const auto& [name, t] : c.parameters)
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
      where.fail("parameter name '", name, "' is not usable as an HDF5 dataset name (empty or contains '/')");
  check_consistent(c, where);
  if (o.compress_pruned)
    for (const auto& [name, mask] : c.masks) check_pruned_are_zero(name, *c.find_parameter(name), mask, where);
  for (const auto* json : {&c.model_config, &c.metrics})
    if (!nlohmann::json::accept(*json)) where.fail("model_config and metrics must be valid JSON");
  for (const auto* s : {&c.model_config, &c.run_config, &c.stage, &c.metrics})
    if (s->find('\0') != std::string::npos) where.fail("string attributes may not contain NUL bytes");
}

Checkpoint read_checkpoint(const std::string& path, const LoadOptions& o, Where& where) {
  where.object = "file";
  H5Id file = H5_OPEN(H5Fopen(path.c_str(), H5F_ACC_RDONLY, file_access(where)), H5Fclose);
  H5Id half = make_half_type(where);
  Checkpoint c;
  read_root(file, path, c, where);
  std::vector<Stored> params = read_group(file, "/parameters", half, Kind::parameters, where);
  std::vector<Stored> masks = read_group(file, "/masks", half, Kind::masks, where);
  densify(params, masks, where);
  for (Stored& p : params) c.parameters.emplace_back(p.name, std::move(p.data));
  for (Stored& m : masks) c.masks.emplace(m.name, std::move(m.data));
  where.object = "/optimizer";
  if (o.load_optimizer && H5_CHECK(H5Lexists(file, "/optimizer", H5P_DEFAULT)) > 0) {
    OptimizerState opt;
    {
      H5Id group = H5_OPEN(H5Gopen2(file, "/optimizer", H5P_DEFAULT), H5Gclose);
      opt.step = read_i64_attr(group, "step", "/optimizer", where);
    }
    for (Stored& s : read_group(file, "/optimizer/m", half, Kind::other, where)) opt.m.emplace(s.name, s.data);
    for (Stored& s : read_group(file, "/optimizer/v", half, Kind::other, where)) opt.v.emplace(s.name, s.data);
    c.optimizer = std::move(opt);
  }
  check_consistent(c, where);
  // Widen after checking (exact): f16 parameters unless asked to keep them, optimizer state always.
  for (auto& [name, t] : c.parameters)
    if (!o.keep_fp16) t = t.to(DType::f32);
  if (c.optimizer)
    for (auto* moments : {&c.optimizer->m, &c.optimizer->v})
      for (auto& [name, t] : *moments) t = t.to(DType::f32);
  return c;
}

}  // namespace

SaveReport save_checkpoint(const std::string& path, const Checkpoint& ckpt, const SaveOptions& options) {
  Hdf5Lock lock(hdf5_mutex());
  Where where{path, false};
  init_hdf5();
  check_savable(ckpt, options, where);
  // The checks above passed, so the writer's own (the same) cannot fail half-way; it writes a temporary and puts it
  // in place only once complete.
  CheckpointWriter writer(path, options);
  for (const auto& [name, t] : ckpt.parameters) {
    const auto mask = ckpt.masks.find(name);
    writer.add_parameter(name, t, mask == ckpt.masks.end() ? Tensor() : mask->second);
  }
  return writer.commit(ckpt);
}

Checkpoint load_checkpoint(const std::string& path, const LoadOptions& options) {
  Hdf5Lock lock(hdf5_mutex());
  Where where{path, true};
  init_hdf5();
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) PT_FAIL("checkpoint ", path, " does not exist");
  if (!std::filesystem::is_regular_file(status)) PT_FAIL("checkpoint ", path, " is not a regular file");
  if (::access(path.c_str(), R_OK) != 0) PT_FAIL("checkpoint ", path, " cannot be read: ", std::strerror(errno));
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 <= 0)
    PT_FAIL("checkpoint ", path, " is truncated or corrupt (",
            is_hdf5 == 0 ? "no HDF5 signature" : "H5Fis_hdf5 failed: " + hdf5_error_text(), ")");
  try {
    return read_checkpoint(path, options, where);
  } catch (const std::bad_alloc&) {
    PT_FAIL("checkpoint ", path, " is truncated or corrupt (a dataset is too large to allocate)");
  }
}

void validate_checkpoint(const Checkpoint& ckpt, const ExpectedTensors& parameters,
                         const std::optional<ExpectedTensors>& masks) {
  std::vector<std::string> problems;
  auto compare = [&](const char* kind, std::map<std::string, Shape> actual, const ExpectedTensors& expected) {
    for (const auto& [name, shape] : expected) {
      auto it = actual.find(name);
      if (it == actual.end()) {
        problems.push_back(
            detail::concat("missing ", kind, " '", name, "' (the model expects ", shape_str(shape), ")"));
        continue;
      }
      if (it->second != shape)
        problems.push_back(detail::concat(kind, " '", name, "' has shape ", shape_str(it->second),
                                          " in the checkpoint but the model expects ", shape_str(shape)));
      actual.erase(it);
    }
    for (const auto& [name, shape] : actual)
      problems.push_back(detail::concat("unexpected ", kind, " '", name, "' with shape ", shape_str(shape)));
  };
  std::map<std::string, Shape> params, mask_shapes;
  for (const auto& [name, t] : ckpt.parameters) params[name] = t.shape();
  for (const auto& [name, t] : ckpt.masks) mask_shapes[name] = t.shape();
  compare("parameter", params, parameters);
  if (masks) compare("mask", mask_shapes, *masks);
  if (problems.empty()) return;
  std::string text;
  for (size_t i = 0; i < problems.size() && i < 5; ++i) text += (i ? "; " : "") + problems[i];
  if (problems.size() > 5) text += detail::concat("; and ", problems.size() - 5, " more");
  PT_FAIL("checkpoint does not match the model: ", text);
}

}  // namespace pt::nn
