#include "nn/checkpoint_stream.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "base/atomic_file.h"
#include "nn/checkpoint_format.h"

namespace pt::nn {

using namespace hdf5;
using namespace ckfmt;

// Member order matters: the HDF5 handles close before the AtomicFile (declared first) removes an uncommitted
// temporary.
struct CheckpointWriter::Impl {
  Impl(const std::string& path, const SaveOptions& o)
      : where{path, false}, options(o), atomic(path),
        file(open_file(atomic.temp_path(), where)),
        half(make_half_type(where)),
        params(create_group(file, "/parameters", where), H5Gclose),
        masks(create_group(file, "/masks", where), H5Gclose) {}

  static H5Id open_file(const std::string& tmp, Where& where) {
    where.object = "file";
    H5Id fapl = file_access(where);
    H5Id fcpl = H5_OPEN(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
    H5_CHECK(H5Pset_attr_phase_change(fcpl, 0, 0));  // root attributes in dense storage: no 64 KiB limit
    return H5_OPEN(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, fcpl, fapl), H5Fclose);
  }

  Where where;
  SaveOptions options;
  AtomicFile atomic;
  H5Id file, half, params, masks;
  SaveReport report;
  std::set<std::string> names;
  bool any_mask = false;
};

CheckpointWriter::CheckpointWriter(const std::string& path, const SaveOptions& options) {
  Hdf5Lock lock(hdf5_mutex());
  init_hdf5();
  Where where{path, false};
  if (options.gzip_level < 0 || options.gzip_level > 9) where.fail("gzip_level must be 0..9, got ", options.gzip_level);
  impl_ = std::make_unique<Impl>(path, options);
}

CheckpointWriter::~CheckpointWriter() {
  Hdf5Lock lock(hdf5_mutex());
  impl_.reset();
}

void CheckpointWriter::add_parameter(const std::string& name, const Tensor& value, const Tensor& mask) {
  Hdf5Lock lock(hdf5_mutex());
  PT_CHECK(impl_, "CheckpointWriter: add_parameter after commit");
  Where& where = impl_->where;
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
    where.fail("parameter name '", name, "' is not usable as an HDF5 dataset name (empty or contains '/')");
  if (!impl_->names.insert(name).second) where.fail("parameter '", name, "' appears twice");
  if (!value.defined() || !is_floating(value.dtype())) where.fail("parameter '", name, "' must be a floating tensor");
  if (mask.defined()) {
    if (mask.dtype() != DType::u8) where.fail("mask '", name, "' must be a u8 tensor");
    if (mask.shape() != value.shape())
      where.fail("mask '", name, "' has shape ", shape_str(mask.shape()), " but the parameter has ", shape_str(value.shape()));
    if (impl_->options.compress_pruned) check_pruned_are_zero(name, value, mask, where);
    impl_->any_mask = true;
  }
  write_parameter(impl_->params, impl_->masks, name, value, mask, impl_->half, impl_->options, impl_->report, where);
}

SaveReport CheckpointWriter::commit(const Checkpoint& attributes) {
  Hdf5Lock lock(hdf5_mutex());
  PT_CHECK(impl_, "CheckpointWriter: commit called twice");
  Impl& w = *impl_;
  Where& where = w.where;
  write_root(w.file, attributes, w.options.compress_pruned && w.any_mask, w.half, w.options, where);
  where.object = "file";
  H5_CHECK(H5Fflush(w.file, H5F_SCOPE_GLOBAL));
  w.params.close();
  w.masks.close();
  w.half.close();
  // With a handle still open, H5Fclose would "succeed" yet leave the file unwritten.
  const unsigned objects = H5F_OBJ_DATASET | H5F_OBJ_GROUP | H5F_OBJ_DATATYPE | H5F_OBJ_ATTR | H5F_OBJ_LOCAL;
  if (H5_CHECK(H5Fget_obj_count(w.file, objects)) != 0) where.fail("HDF5 handles left open before closing the file");
  if (w.file.close() < 0) where.hdf5_failure("H5Fclose", __LINE__);
  SaveReport report = w.report;
  report.file_bytes = w.atomic.commit();
  impl_.reset();
  return report;
}

struct CheckpointReader::Impl {
  Impl(const std::string& p, Where& where)
      : path(p), file(H5_OPEN(H5Fopen(p.c_str(), H5F_ACC_RDONLY, file_access(where)), H5Fclose)),
        half(make_half_type(where)) {}
  std::string path;
  H5Id file, half;
  Checkpoint attributes;
  std::vector<std::string> parameters;
  std::set<std::string> parameter_set, masks;
};

CheckpointReader::CheckpointReader(const std::string& path) {
  Hdf5Lock lock(hdf5_mutex());
  init_hdf5();
  Where where{path, true};
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) PT_FAIL("checkpoint ", path, " does not exist");
  if (!std::filesystem::is_regular_file(status)) PT_FAIL("checkpoint ", path, " is not a regular file");
  if (::access(path.c_str(), R_OK) != 0) PT_FAIL("checkpoint ", path, " cannot be read: ", std::strerror(errno));
  if (H5Fis_hdf5(path.c_str()) <= 0) PT_FAIL("checkpoint ", path, " is truncated or corrupt (no HDF5 signature)");
  where.object = "file";
  auto impl = std::make_unique<Impl>(path, where);
  read_root(impl->file, path, impl->attributes, where);
  for (const char* group : {"/parameters", "/masks"}) {
    where.object = group;
    if (H5_CHECK(H5Lexists(impl->file, group, H5P_DEFAULT)) == 0) where.fail("missing group ", group);
    H5Id g = H5_OPEN(H5Gopen2(impl->file, group, H5P_DEFAULT), H5Gclose);
    for (std::string& name : dataset_names(g, group, where)) {
      if (group[1] == 'm') {
        impl->masks.insert(name);
        continue;
      }
      impl->parameter_set.insert(name);
      impl->parameters.push_back(std::move(name));
    }
  }
  for (const auto& m : impl->masks)
    if (!impl->parameter_set.count(m)) where.fail("mask '", m, "' has no parameter of that name");
  impl_ = std::move(impl);
}

CheckpointReader::~CheckpointReader() {
  Hdf5Lock lock(hdf5_mutex());
  impl_.reset();
}

const std::string& CheckpointReader::path() const { return impl_->path; }
const Checkpoint& CheckpointReader::attributes() const { return impl_->attributes; }
const std::vector<std::string>& CheckpointReader::parameter_names() const { return impl_->parameters; }
bool CheckpointReader::has_parameter(const std::string& name) const { return impl_->parameter_set.count(name) > 0; }
bool CheckpointReader::has_mask(const std::string& name) const { return impl_->masks.count(name) > 0; }

CheckpointReader::Parameter CheckpointReader::read(const std::string& name, bool keep_fp16) const {
  Hdf5Lock lock(hdf5_mutex());
  Where where{impl_->path, true};
  PT_CHECK(has_parameter(name), "checkpoint ", impl_->path, " has no parameter '", name, "' (it has ",
           impl_->parameters.size(), ")");
  H5Id pg = H5_OPEN(H5Gopen2(impl_->file, "/parameters", H5P_DEFAULT), H5Gclose);
  Stored p = read_stored(pg, "/parameters", name, impl_->half, Kind::parameters, where);
  std::optional<Stored> m;
  if (has_mask(name)) {
    H5Id mg = H5_OPEN(H5Gopen2(impl_->file, "/masks", H5P_DEFAULT), H5Gclose);
    m = read_stored(mg, "/masks", name, impl_->half, Kind::masks, where);
  }
  if (!is_floating(p.data.dtype())) where.fail("parameter '", name, "' must be a floating tensor");
  if (p.dense_shape) densify_pair(p, m ? &*m : nullptr, where);
  else if (m && m->packed_bits)
    where.corrupt("/masks/", name, " is bit-packed but its parameter /parameters/", name, " is not compressed");
  Parameter out;
  out.value = keep_fp16 ? p.data : p.data.to(DType::f32);
  if (m) {
    out.mask = m->data;
    if (out.mask.shape() != out.value.shape())
      where.fail("mask '", name, "' has shape ", shape_str(out.mask.shape()), " but the parameter has ",
                 shape_str(out.value.shape()));
    const uint8_t* v = out.mask.data<uint8_t>();
    for (int64_t i = 0; i < out.mask.numel(); ++i)
      if (v[i] > 1) where.fail("mask '", name, "' holds values other than 0 and 1");
  }
  return out;
}

}  // namespace pt::nn
