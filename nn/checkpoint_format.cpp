#include "nn/checkpoint_format.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <type_traits>

namespace pt::nn::ckfmt {

using namespace hdf5;

namespace {

herr_t collect_link(hid_t, const char* name, const H5L_info_t* info, void* out) {
  try {
    static_cast<std::vector<std::pair<std::string, bool>>*>(out)->emplace_back(name, info->type == H5L_TYPE_HARD);
  } catch (...) {
    return -1;  // never let an exception cross HDF5's C frames
  }
  return 0;
}

}  // namespace

// ---- writing ---------------------------------------------------------------------------------------------

void write_attr(hid_t obj, const char* name, hid_t file_type, hid_t mem_type, const void* value, Where& where) {
  where.object = std::string("attribute ") + name;
  H5Id space = H5_OPEN(H5Screate(H5S_SCALAR), H5Sclose);
  H5Id attr = H5_OPEN(H5Acreate2(obj, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  H5_CHECK(H5Awrite(attr, mem_type, value));
}

// Chunks of about 1 MiB (h5py aims between 8 KiB and 1 MiB): whole trailing rows, split the first partial dim.
std::vector<hsize_t> chunk_dims(const Shape& shape, size_t elem_size) {
  const hsize_t target = std::max<hsize_t>(1, (hsize_t(1) << 20) / elem_size);
  std::vector<hsize_t> c(shape.size(), 1);
  hsize_t prod = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    c[d] = std::min<hsize_t>(hsize_t(shape[d]), std::max<hsize_t>(1, target / prod));
    prod *= c[d];
    if (c[d] < hsize_t(shape[d])) break;
  }
  return c;
}

// A 1-D int64 attribute (a shape; empty for a scalar).
void write_shape_attr(hid_t obj, const char* name, const Shape& shape, Where& where) {
  where.object = std::string("attribute ") + name;
  const hsize_t rank = shape.size();
  H5Id space = H5_OPEN(H5Screate_simple(1, &rank, nullptr), H5Sclose);
  H5Id attr = H5_OPEN(H5Acreate2(obj, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (rank > 0) H5_CHECK(H5Awrite(attr, H5T_NATIVE_INT64, shape.data()));
}

// `host` is a contiguous CPU tensor already in its stored dtype (f32, f16 or u8). Returns the open dataset.
H5Id write_dataset(hid_t group, const std::string& name, const Tensor& host, hid_t half, const SaveOptions& o,
                   Where& where) {
  const Shape& shape = host.shape();
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  H5Id space(shape.empty() ? H5_CHECK(H5Screate(H5S_SCALAR))
                           : H5_CHECK(H5Screate_simple(int(dims.size()), dims.data(), nullptr)),
             H5Sclose);
  H5Id dcpl = H5_OPEN(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if ((o.gzip_level > 0 || o.checksums) && !shape.empty() && host.numel() > 0) {  // filters need chunks
    auto chunk = chunk_dims(shape, dtype_size(host.dtype()));
    H5_CHECK(H5Pset_chunk(dcpl, int(chunk.size()), chunk.data()));
    if (o.gzip_level > 0) H5_CHECK(H5Pset_shuffle(dcpl));  // byte-shuffle first: floats compress much better
    if (o.gzip_level > 0) H5_CHECK(H5Pset_deflate(dcpl, unsigned(o.gzip_level)));
    if (o.checksums) H5_CHECK(H5Pset_fletcher32(dcpl));  // last, so it covers the stored bytes
  }
  hid_t file_type = host.dtype() == DType::f16 ? half : host.dtype() == DType::u8 ? H5T_STD_U8LE : H5T_IEEE_F32LE;
  hid_t mem_type = host.dtype() == DType::f16 ? half : host.dtype() == DType::u8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT;
  H5Id ds = H5_OPEN(H5Dcreate2(group, name.c_str(), file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), H5Dclose);
  if (host.numel() > 0) H5_CHECK(H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, host.data_ptr()));
  return ds;
}

// Host copy in the stored dtype; f16 goes through pt's own round-to-nearest-even (not HDF5's conversion).
Tensor stored_form(const Tensor& t, DType stored) {
  Tensor host = t.to(Device::cpu);
  if (host.dtype() == stored) return host.contiguous();
  if (stored != DType::f16) return host.to(stored).contiguous();
  Tensor f = host.to(DType::f32).contiguous(), out = Tensor::empty(f.shape(), DType::f16);
  const float* src = f.data<float>();
  uint16_t* dst = reinterpret_cast<uint16_t*>(out.data<half_t>());
  for (int64_t i = 0; i < f.numel(); ++i) dst[i] = float_to_f16(src[i]);
  return out;
}

// ---- compressed pruned parameters (layout in checkpoint.h) ----

// Mask element i (row-major) becomes bit i % 8 of byte i / 8, least significant bit first; the bits past the end
// of the last byte stay 0. `mask` is a contiguous CPU u8 tensor.
// Whole bytes first, eight mask bytes at a time and without branches (a streamed prune writes every layer's masks
// while the next layer computes, on the same cores); then the tail.
Tensor pack_mask(const Tensor& mask) {
  const int64_t n = mask.numel(), whole = n / 8;
  Tensor packed = Tensor::zeros({(n + 7) / 8}, DType::u8);
  const uint8_t* m = mask.data<uint8_t>();
  uint8_t* p = packed.data<uint8_t>();
  for (int64_t b = 0; b < whole; ++b) {
    const uint8_t* e = m + 8 * b;
    unsigned byte = 0;
    for (int k = 0; k < 8; ++k) byte |= unsigned(e[k] != 0) << k;
    p[b] = uint8_t(byte);
  }
  for (int64_t i = 8 * whole; i < n; ++i) p[i >> 3] = uint8_t(p[i >> 3] | (uint8_t(m[i] != 0) << (i & 7)));
  return packed;
}

// Branch-free: every value is stored and the write position advances only past kept ones (a pruned mask is close
// to random, so a branch would mispredict about half the time). `dst` has room for the kept values only, so the
// last store is guarded.
template <class E> void gather_kept(const E* src, const uint8_t* keep, int64_t n, E* dst, int64_t kept) {
  int64_t j = 0;
  for (int64_t i = 0; i < n && j < kept; ++i) {
    dst[j] = src[i];
    j += keep[i] != 0;
  }
}

// The values where the mask is 1, in row-major order, as a 1-D tensor of `dense`'s dtype (f32 or f16; the bits
// are copied, so NaN payloads and -0 survive). Both tensors are contiguous on the CPU.
Tensor kept_values(const Tensor& dense, const Tensor& mask) {
  const uint8_t* keep = mask.data<uint8_t>();
  const int64_t n = dense.numel(), kept = std::count_if(keep, keep + n, [](uint8_t v) { return v != 0; });
  Tensor out = Tensor::empty({kept}, dense.dtype());
  if (kept == 0) return out;
  if (dtype_size(dense.dtype()) == 2)
    gather_kept(static_cast<const uint16_t*>(dense.data_ptr()), keep, n, static_cast<uint16_t*>(out.data_ptr()), kept);
  else
    gather_kept(static_cast<const uint32_t*>(dense.data_ptr()), keep, n, static_cast<uint32_t*>(out.data_ptr()), kept);
  return out;
}

// Compression drops the values where the mask is 0, so they must all be zero (+0 or -0; they load as +0).
void check_pruned_are_zero(const std::string& name, const Tensor& param, const Tensor& mask, const Where& where) {
  Tensor w = param.to(Device::cpu);
  if (w.dtype() != DType::f64) w = w.to(DType::f32);  // exact for f16 and bf16
  w = w.contiguous();
  Tensor m = mask.to(Device::cpu).contiguous();
  const uint8_t* keep = m.data<uint8_t>();
  const int64_t n = w.numel();
  int64_t bad = 0, first = -1;
  double first_value = 0.0;
  auto scan = [&](const auto* v) {
    for (int64_t i = 0; i < n; ++i) bad += int64_t(!keep[i] & (v[i] != 0));  // branch-free count
    for (int64_t i = 0; bad > 0 && first < 0 && i < n; ++i)
      if (!keep[i] && v[i] != 0) first = i, first_value = double(v[i]);
  };
  if (w.dtype() == DType::f64) scan(w.data<double>());
  else scan(w.data<float>());
  if (bad > 0)
    where.fail("parameter '", name, "' has nonzero values where its mask is 0; compressing would lose them (", bad,
               " such value", bad == 1 ? "" : "s", ", the first at flat index ", first, ": ", first_value,
               "). Apply the mask to the weight first, or save without compress_pruned");
}

hid_t create_group(hid_t parent, const char* name, Where& where) {
  where.object = name;
  H5Id gcpl = H5_OPEN(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
  H5_CHECK(H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED));  // keep save order
  return H5_CHECK(H5Gcreate2(parent, name, H5P_DEFAULT, gcpl, H5P_DEFAULT));
}

// Fixed-length strings: they live in the checksummed attribute storage. Variable-length ones would live in
// HDF5's global heap, which has no checksum: a damaged heap length there crashes the 1.10 reader.
void write_string_attr(hid_t obj, const char* name, const std::string& v, Where& where) {
  H5Id text = H5_OPEN(H5Tcopy(H5T_C_S1), H5Tclose);
  H5_CHECK(H5Tset_size(text, std::max<size_t>(1, v.size())));
  H5_CHECK(H5Tset_strpad(text, H5T_STR_NULLPAD));
  H5_CHECK(H5Tset_cset(text, H5T_CSET_UTF8));
  std::string padded = v.empty() ? std::string(1, '\0') : v;
  write_attr(obj, name, text, text, padded.data(), where);
}

void write_i64_attr(hid_t obj, const char* name, int64_t v, Where& where) {
  write_attr(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, where);
}

void write_parameter(hid_t params, hid_t masks, const std::string& name, const Tensor& value, const Tensor& mask,
                     hid_t half, const SaveOptions& o, SaveReport& report, Where& where) {
  const DType stored = o.fp16_parameters ? DType::f16 : DType::f32;
  const int64_t elem = int64_t(dtype_size(stored));
  where.object = "/parameters/" + name;
  const Tensor dense = stored_form(value, stored);
  if (!mask.defined()) {
    write_dataset(params, name, dense, half, o, where);
    return;
  }
  const int64_t n = dense.numel();
  report.parameter_bytes_dense += n * elem;
  const Tensor keep = stored_form(mask, DType::u8);
  if (!o.compress_pruned) {
    report.parameter_bytes_stored += n * elem + n;  // values + the u8 mask
    write_dataset(params, name, dense, half, o, where);
    where.object = "/masks/" + name;
    write_dataset(masks, name, keep, half, o, where);
    return;
  }
  const Tensor values = kept_values(dense, keep);
  {
    H5Id ds = write_dataset(params, name, values, half, o, where);
    write_string_attr(ds, "sparse_format", "bitmask", where);
    write_shape_attr(ds, "dense_shape", dense.shape(), where);
  }
  report.parameter_bytes_stored += values.numel() * elem + (n + 7) / 8;
  ++report.compressed_parameters;
  where.object = "/masks/" + name;
  H5Id ds = write_dataset(masks, name, pack_mask(keep), half, o, where);
  write_i64_attr(ds, "packed_bits", keep.numel(), where);
}

void write_root(hid_t file, const Checkpoint& c, bool compressed, hid_t half, const SaveOptions& o, Where& where) {
  auto u64 = [&](const char* name, uint64_t v) { write_attr(file, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v, where); };
  write_string_attr(file, "format", kCheckpointFormatName, where);
  write_i64_attr(file, "format_version", compressed ? kCheckpointFormatVersion : kCheckpointMinFormatVersion, where);
  write_string_attr(file, "model_config", c.model_config, where);
  write_string_attr(file, "run_config", c.run_config, where);
  write_string_attr(file, "stage", c.stage, where);
  write_i64_attr(file, "stage_index", c.stage_index, where);
  write_i64_attr(file, "step", c.step, where);
  u64("rng_seed", c.rng.seed);
  u64("rng_offset", c.rng.offset);
  write_string_attr(file, "metrics", c.metrics, where);
  if (!c.optimizer) return;
  auto write_group = [&](hid_t group, const std::string& prefix, const std::map<std::string, Tensor>& tensors) {
    for (const auto& [name, t] : tensors) {
      where.object = prefix + name;
      write_dataset(group, name, stored_form(t, DType::f32), half, o, where);
    }
  };
  H5Id opt(create_group(file, "/optimizer", where), H5Gclose);
  write_i64_attr(opt, "step", c.optimizer->step, where);
  H5Id m(create_group(file, "/optimizer/m", where), H5Gclose);
  write_group(m, "/optimizer/m/", c.optimizer->m);
  H5Id v(create_group(file, "/optimizer/v", where), H5Gclose);
  write_group(v, "/optimizer/v/", c.optimizer->v);
}

// ---- reading ---------------------------------------------------------------------------------------------

// A group's datasets, in creation order when the writer tracked it (ours always does), else by name.
std::vector<std::string> dataset_names(hid_t group, const std::string& gpath, Where& where) {
  where.object = gpath;
  H5Id gcpl = H5_OPEN(H5Gget_create_plist(group), H5Pclose);
  unsigned flags = 0;
  H5_CHECK(H5Pget_link_creation_order(gcpl, &flags));
  const bool by_order = (flags & H5P_CRT_ORDER_TRACKED) && (flags & H5P_CRT_ORDER_INDEXED);
  std::vector<std::pair<std::string, bool>> links;
  hsize_t idx = 0;
  H5_CHECK(H5Literate(group, by_order ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME, H5_ITER_INC, &idx, collect_link, &links));
  std::vector<std::string> names;
  for (const auto& [name, hard] : links) {
    where.object = gpath + "/" + name;
    H5O_info_t info;
    if (hard) H5_CHECK(H5Oget_info_by_name2(group, name.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT));
    if (!hard || info.type != H5O_TYPE_DATASET) where.fail(where.object, " is not a dataset");
    names.push_back(name);
  }
  return names;
}

// Reads one open dataset in its stored dtype (f32, IEEE f16 or u8), checking type and shape before allocating.
Tensor read_dataset(hid_t ds, hid_t half, Where& where) {
  H5Id type = H5_OPEN(H5Dget_type(ds), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type);
  const size_t size = H5Tget_size(type);
  if (cls == H5T_NO_CLASS || size == 0) where.hdf5_failure("H5Tget_class/H5Tget_size", __LINE__);
  DType dtype;
  hid_t mem;
  if (cls == H5T_FLOAT && size == 4) {
    dtype = DType::f32, mem = H5T_NATIVE_FLOAT;
  } else if (cls == H5T_FLOAT && size == 2 && is_ieee_half(type)) {
    dtype = DType::f16, mem = half;
  } else if (cls == H5T_INTEGER && size == 1 && H5Tget_sign(type) == H5T_SGN_NONE) {
    dtype = DType::u8, mem = H5T_NATIVE_UINT8;
  } else {
    const char* kind = cls == H5T_FLOAT ? "float" : cls == H5T_INTEGER ? "integer" : "non-numeric";
    where.fail(where.object, " has an unsupported element type (", size * 8, "-bit ", kind,
               "); checkpoints hold f32, IEEE f16 or u8");
  }
  H5Id space = H5_OPEN(H5Dget_space(ds), H5Sclose);
  const H5S_class_t sclass = H5Sget_simple_extent_type(space);
  if (sclass == H5S_NO_CLASS) where.hdf5_failure("H5Sget_simple_extent_type", __LINE__);
  if (sclass == H5S_NULL) where.fail(where.object, " has an empty (null) dataspace");
  Shape shape;
  if (sclass == H5S_SIMPLE) {
    std::vector<hsize_t> dims(size_t(H5_CHECK(H5Sget_simple_extent_ndims(space))));
    H5_CHECK(H5Sget_simple_extent_dims(space, dims.data(), nullptr));
    double bytes = double(size);
    for (hsize_t d : dims) shape.push_back(int64_t(d)), bytes *= double(d);
    if (bytes > double(1ull << 42))  // a damaged header must not ask for an absurd buffer
      PT_FAIL("checkpoint ", where.path, " is truncated or corrupt (", where.object, " claims ", shape_str(shape), ")");
  }
  Tensor t = Tensor::empty(shape, dtype);
  if (t.numel() > 0) H5_CHECK(H5Dread(ds, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()));
  return t;
}

H5Id open_scalar_attr(hid_t obj, const char* name, const char* on, Where& where) {
  where.object = std::string("attribute ") + name;
  if (H5_CHECK(H5Aexists(obj, name)) == 0)
    where.fail("missing attribute '", name, "' on ", on, " (written by another program, or damaged)");
  H5Id attr = H5_OPEN(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  H5Id space = H5_OPEN(H5Aget_space(attr), H5Sclose);
  if (H5Sget_simple_extent_type(space) != H5S_SCALAR) where.fail("attribute '", name, "' on ", on, " is not a scalar");
  return attr;
}

// Fixed-length (ours) or variable-length (h5py's str) strings.
std::string read_string_attr(hid_t obj, const char* name, const char* on, Where& where) {
  H5Id attr = open_scalar_attr(obj, name, on, where);
  H5Id type = H5_OPEN(H5Aget_type(attr), H5Tclose);
  if (H5Tget_class(type) != H5T_STRING) where.fail("attribute '", name, "' on ", on, " is not a string");
  if (H5_CHECK(H5Tis_variable_str(type)) > 0) {
    char* p = nullptr;
    H5_CHECK(H5Aread(attr, type, &p));
    std::string s = p ? p : "";
    H5Id space = H5_OPEN(H5Screate(H5S_SCALAR), H5Sclose);
    H5_CHECK(H5Dvlen_reclaim(type, space, H5P_DEFAULT, &p));
    return s;
  }
  const size_t size = H5Tget_size(type);
  if (size == 0) where.hdf5_failure("H5Tget_size", __LINE__);
  std::string s(size, '\0');
  H5_CHECK(H5Aread(attr, type, s.data()));
  return s.substr(0, std::strlen(s.c_str()));
}

template <class T> T read_int_attr(hid_t obj, const char* name, const char* on, Where& where) {
  H5Id attr = open_scalar_attr(obj, name, on, where);
  H5Id type = H5_OPEN(H5Aget_type(attr), H5Tclose);
  if (H5Tget_class(type) != H5T_INTEGER) where.fail("attribute '", name, "' on ", on, " is not an integer");
  T value{};
  H5_CHECK(H5Aread(attr, std::is_signed_v<T> ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64, &value));
  return value;
}

int64_t read_i64_attr(hid_t obj, const char* name, const char* on, Where& where) {
  return read_int_attr<int64_t>(obj, name, on, where);
}

// A 1-D integer attribute (a shape; empty for a scalar).
Shape read_shape_attr(hid_t obj, const char* name, const std::string& on, Where& where) {
  where.object = std::string("attribute ") + name;
  if (H5_CHECK(H5Aexists(obj, name)) == 0)
    where.fail("missing attribute '", name, "' on ", on, " (written by another program, or damaged)");
  H5Id attr = H5_OPEN(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  H5Id type = H5_OPEN(H5Aget_type(attr), H5Tclose);
  H5Id space = H5_OPEN(H5Aget_space(attr), H5Sclose);
  if (H5Tget_class(type) != H5T_INTEGER || H5Sget_simple_extent_type(space) != H5S_SIMPLE ||
      H5_CHECK(H5Sget_simple_extent_ndims(space)) != 1)
    where.fail("attribute '", name, "' on ", on, " is not a 1-D integer array");
  hsize_t rank = 0;
  H5_CHECK(H5Sget_simple_extent_dims(space, &rank, nullptr));
  if (rank > 64) where.corrupt(on, " has a ", name, " of rank ", rank);
  Shape shape(size_t(rank), 0);
  if (rank > 0) H5_CHECK(H5Aread(attr, H5T_NATIVE_INT64, shape.data()));
  return shape;
}

Stored read_stored(hid_t group, const std::string& gpath, const std::string& name, hid_t half, Kind kind,
                   Where& where) {
  const std::string on = gpath + "/" + name;
  where.object = on;
  H5Id ds = H5_OPEN(H5Dopen2(group, name.c_str(), H5P_DEFAULT), H5Dclose);
  Stored s{name, read_dataset(ds, half, where), std::nullopt, std::nullopt};
  if (kind == Kind::parameters && H5_CHECK(H5Aexists(ds, "sparse_format")) > 0) {
    const std::string format = read_string_attr(ds, "sparse_format", on.c_str(), where);
    if (format != "bitmask") where.fail(on, " has sparse_format '", format, "'; this build reads 'bitmask' only");
    s.dense_shape = read_shape_attr(ds, "dense_shape", on, where);
  }
  where.object = on;
  if (kind == Kind::masks && H5_CHECK(H5Aexists(ds, "packed_bits")) > 0)
    s.packed_bits = read_int_attr<int64_t>(ds, "packed_bits", on.c_str(), where);
  return s;
}

std::vector<Stored> read_group(hid_t file, const std::string& gpath, hid_t half, Kind kind, Where& where) {
  where.object = gpath;
  if (H5_CHECK(H5Lexists(file, gpath.c_str(), H5P_DEFAULT)) == 0) where.fail("missing group ", gpath);
  H5Id group = H5_OPEN(H5Gopen2(file, gpath.c_str(), H5P_DEFAULT), H5Gclose);
  std::vector<Stored> out;
  for (const std::string& name : dataset_names(group, gpath, where))
    out.push_back(read_stored(group, gpath, name, half, kind, where));
  return out;
}

// Element i of the dense tensor is bit i % 8 of packed byte i / 8 (see checkpoint.h).
bool bit(const uint8_t* packed, int64_t i) { return (packed[i >> 3] >> (i & 7)) & 1; }

template <class E> void scatter_kept(const E* values, const uint8_t* packed, int64_t n, E* dense, uint8_t* mask) {
  for (int64_t i = 0; i < n; ++i)
    if ((mask[i] = uint8_t(bit(packed, i)))) dense[i] = *values++;
}

void read_root(hid_t file, const std::string& path, Checkpoint& c, Where& where) {
  // Identify the file first, so a foreign HDF5 file gets a plain answer.
  where.object = "attribute format";
  if (H5_CHECK(H5Aexists(file, "format")) == 0)
    PT_FAIL("checkpoint ", path, " is an HDF5 file but not a prune-and-tune checkpoint");
  const std::string format = read_string_attr(file, "format", "/", where);
  if (format != kCheckpointFormatName)
    PT_FAIL("checkpoint ", path, " is not a prune-and-tune checkpoint (format '", format, "')");
  const int64_t version = read_int_attr<int64_t>(file, "format_version", "/", where);
  if (version < kCheckpointMinFormatVersion || version > kCheckpointFormatVersion)
    PT_FAIL("checkpoint ", path, " has format version ", version, "; this build reads versions ",
            kCheckpointMinFormatVersion, " to ", kCheckpointFormatVersion,
            " only (use the build that wrote it, or convert the file)");
  c.model_config = read_string_attr(file, "model_config", "/", where);
  c.run_config = read_string_attr(file, "run_config", "/", where);
  c.stage = read_string_attr(file, "stage", "/", where);
  c.stage_index = read_int_attr<int64_t>(file, "stage_index", "/", where);
  c.step = read_int_attr<int64_t>(file, "step", "/", where);
  c.rng.seed = read_int_attr<uint64_t>(file, "rng_seed", "/", where);
  c.rng.offset = read_int_attr<uint64_t>(file, "rng_offset", "/", where);
  c.metrics = read_string_attr(file, "metrics", "/", where);
  if (!nlohmann::json::accept(c.model_config)) where.fail("attribute 'model_config' is not valid JSON");
  if (!nlohmann::json::accept(c.metrics)) where.fail("attribute 'metrics' is not valid JSON");
}

// A compressed parameter and its bit-packed mask back to dense tensors (exact zeros where pruned, u8 0/1 mask),
// after checking that the pieces agree.
void densify_pair(Stored& p, Stored* m, Where& where) {
  const std::string pname = "/parameters/" + p.name, mname = "/masks/" + p.name;
  where.object = pname;
  if (!m)
    where.fail("parameter '", p.name, "' is stored compressed (sparse_format 'bitmask') but its mask ", mname,
               " is missing, so its pruned positions cannot be restored");
  if (!m->packed_bits) where.corrupt(pname, " is compressed but its mask ", mname, " is not bit-packed");
  if (p.data.dim() != 1)
    where.corrupt(pname, " is compressed but holds shape ", shape_str(p.data.shape()), " instead of 1-D values");
  if (m->data.dim() != 1)
    where.corrupt(mname, " is bit-packed but has shape ", shape_str(m->data.shape()), " instead of 1-D bytes");
  // Sizes, checked before anything is allocated: dense_shape agrees with packed_bits, which fits the bytes.
  const Shape& shape = *p.dense_shape;
  const int64_t bits = *m->packed_bits, bytes = m->data.numel();
  if (bits < 0 || (bits + 7) / 8 != bytes)
    where.corrupt(mname, " holds ", bytes, " bytes but its packed_bits = ", bits, " needs ceil(", bits,
                  " / 8) = ", bits < 0 ? 0 : (bits + 7) / 8);
  int64_t n = 1;  // product(shape), or -1 when negative or more than `bits`
  if (std::any_of(shape.begin(), shape.end(), [](int64_t d) { return d < 0; })) n = -1;
  else if (std::count(shape.begin(), shape.end(), 0) > 0) n = 0;
  else
    for (int64_t d : shape) n = n < 0 || n > bits / d ? -1 : n * d;  // never overflows
  if (n != bits)
    where.corrupt(pname, " has dense_shape ", shape_str(shape), " but its mask ", mname, " packs ", bits, " bits");
  const uint8_t* packed = m->data.data<uint8_t>();
  if (bits % 8 != 0 && (packed[bytes - 1] >> (bits % 8)) != 0)
    where.corrupt(mname, " has bits set past packed_bits = ", bits);
  int64_t set = 0;
  for (int64_t i = 0; i < bytes; ++i) set += std::popcount(packed[i]);
  if (set != p.data.numel())
    where.corrupt(pname, " holds ", p.data.numel(), " values but its mask ", mname, " has ", set, " bits set");
  Tensor dense = Tensor::zeros(shape, p.data.dtype()), mask = Tensor::empty(shape, DType::u8);
  const void* values = p.data.numel() > 0 ? p.data.data_ptr() : nullptr;
  if (dtype_size(dense.dtype()) == 2)
    scatter_kept(static_cast<const uint16_t*>(values), packed, n, static_cast<uint16_t*>(dense.data_ptr()),
                 mask.data<uint8_t>());
  else
    scatter_kept(static_cast<const uint32_t*>(values), packed, n, static_cast<uint32_t*>(dense.data_ptr()),
                 mask.data<uint8_t>());
  p.data = dense;
  m->data = mask;
  m->packed_bits.reset();
}

void check_no_stray_packed_masks(const std::vector<Stored>& params, const std::vector<Stored>& masks, Where& where) {
  for (const Stored& m : masks) {  // left over: packed masks whose parameter is not compressed
    if (!m.packed_bits) continue;
    if (std::none_of(params.begin(), params.end(), [&](const Stored& p) { return p.name == m.name; }))
      where.fail("mask '", m.name, "' has no parameter of that name");
    where.corrupt("/masks/", m.name, " is bit-packed but its parameter /parameters/", m.name, " is not compressed");
  }
}

void densify(std::vector<Stored>& params, std::vector<Stored>& masks, Where& where) {
  std::map<std::string, Stored*> by_name;
  for (Stored& m : masks) by_name[m.name] = &m;
  for (Stored& p : params) {
    if (!p.dense_shape) continue;
    auto it = by_name.find(p.name);
    densify_pair(p, it == by_name.end() ? nullptr : it->second, where);
  }
  check_no_stray_packed_masks(params, masks, where);
}

}  // namespace pt::nn::ckfmt
