#include "nn/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "base/atomic_file.h"
#include "nn/untrusted_json.h"

namespace pt::nn {

// The format is little-endian and this code moves raw bytes; a big-endian port would need byte swaps.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

using nlohmann::json;
constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference reader's limit

struct StoredDType {
  const char* name;
  DType dtype;
  size_t size;
};
constexpr StoredDType kStoredDTypes[] = {{"F16", DType::f16, 2}, {"BF16", DType::bf16, 2}, {"F32", DType::f32, 4},
                                         {"F64", DType::f64, 8}, {"I32", DType::i32, 4},   {"I64", DType::i64, 8},
                                         {"U8", DType::u8, 1},   {"BOOL", DType::u8, 1}};

const StoredDType* find_stored_dtype(const std::string& name) {
  for (const auto& d : kStoredDTypes)
    if (name == d.name) return &d;
  return nullptr;
}

std::string supported_dtype_list() {
  std::string s;
  for (const auto& d : kStoredDTypes) s += (s.empty() ? "" : ", ") + std::string(d.name);
  return s;
}

std::string offsets_str(uint64_t b, uint64_t e) { return "[" + std::to_string(b) + ", " + std::to_string(e) + "]"; }

template <class Out, class Load>
void convert_loop(Out* out, int64_t n, Load load) {
  for (int64_t i = 0; i < n; ++i) out[i] = load(i);
}

// Writes n elements of dtype dst; load(i) gives source element i as float (double for F64 data, so only a
// narrowing target rounds; F64 -> F16 rounds twice, through float).
template <class Load>
void store_floats(DType dst, void* out, int64_t n, Load load) {
  switch (dst) {
    case DType::f32:
      return convert_loop(static_cast<float*>(out), n, [&](int64_t i) { return float(load(i)); });
    case DType::f64:
      return convert_loop(static_cast<double*>(out), n, [&](int64_t i) { return double(load(i)); });
    case DType::f16:
      return convert_loop(static_cast<uint16_t*>(out), n, [&](int64_t i) { return float_to_f16(float(load(i))); });
    case DType::bf16:
      return convert_loop(static_cast<uint16_t*>(out), n, [&](int64_t i) { return float_to_bf16(float(load(i))); });
    default:
      PT_FAIL("safetensors: internal error: not a floating dtype");
  }
}

// Unaligned little-endian load (the data section has no alignment guarantee in files from other writers).
template <class T>
T load_at(const uint8_t* p, int64_t i) {
  T v;
  std::memcpy(&v, p + i * int64_t(sizeof(T)), sizeof(T));
  return v;
}

}  // namespace

const char* safetensors_dtype_name(DType t) {
  for (const auto& d : kStoredDTypes)
    if (d.dtype == t) return d.name;  // u8 -> "U8" (first match), never "BOOL"
  PT_FAIL("safetensors: dtype ", dtype_name(t), " has no safetensors name");
}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    close();
    path_ = std::move(o.path_);
    fd_ = std::exchange(o.fd_, -1);
    size_ = std::exchange(o.size_, 0);
    data_start_ = o.data_start_;
    entries_ = std::move(o.entries_);
    metadata_ = std::move(o.metadata_);
    o.path_.clear();
  }
  return *this;
}

void SafetensorsFile::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  size_ = 0;
  data_start_ = 0;
  path_.clear();
  entries_.clear();
  metadata_.clear();
}

void SafetensorsFile::open(const std::string& path) {
  close();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  PT_CHECK(fd >= 0, "safetensors ", path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    PT_FAIL("safetensors ", path, ": not a regular file");
  }
  const uint64_t size = uint64_t(st.st_size);
  if (size < 8) {
    ::close(fd);
    PT_FAIL("safetensors ", path, ": file is ", size, " bytes, shorter than the 8-byte header length");
  }
  fd_ = fd;
  size_ = size;
  path_ = path;

  // Any failure below must leave the object closed: validate in a lambda and close on error.
  auto validate = [&] {
    uint64_t n = 0;
    read_bytes(&n, 8, 0);
    PT_CHECK(n <= kMaxHeaderBytes, "safetensors ", path, ": header length ", n, " is over the limit of ",
             kMaxHeaderBytes, " bytes (not a safetensors file, or corrupt)");
    PT_CHECK(n <= size - 8, "safetensors ", path, ": truncated: header says ", n, " bytes but the file has ", size - 8,
             " bytes after the 8-byte length");
    std::string text(n, '\0');
    read_bytes(text.data(), n, 8);
    data_start_ = 8 + n;

    // Parse (nesting bounded before anything recurses), noting duplicate top-level keys (nlohmann would silently
    // keep the last one).
    std::string duplicate;
    std::set<std::string> seen;
    const json header = parse_untrusted_json(
        std::string_view(text), "safetensors " + path + ": header",
        kMaxJsonDepth, [&](int depth, json::parse_event_t ev, json& parsed) {
          if (ev == json::parse_event_t::key && depth == 1 && !seen.insert(parsed.get<std::string>()).second)
            duplicate = parsed.get<std::string>();
          return true;
        });
    PT_CHECK(header.is_object(), "safetensors ", path, ": header must be a JSON object, found ", header.type_name());
    PT_CHECK(duplicate.empty(), "safetensors ", path, ": tensor ", printable(duplicate), " appears twice in the header");

    for (auto& [name, v] : header.items()) {
      if (name == "__metadata__") {
        PT_CHECK(v.is_object(), "safetensors ", path, ": __metadata__ must be an object of strings, found ",
                 v.type_name());
        for (auto& [k, s] : v.items()) {
          PT_CHECK(s.is_string(), "safetensors ", path, ": __metadata__ key ", printable(k), " must be a string, found ",
                   s.type_name());
          metadata_[k] = s.get<std::string>();
        }
        continue;
      }
      const std::string where = "safetensors " + path + ": tensor " + printable(name) + ": ";
      PT_CHECK(v.is_object(), where, "header entry must be an object, found ", v.type_name());
      auto dt = v.find("dtype"), sh = v.find("shape"), off = v.find("data_offsets");
      PT_CHECK(dt != v.end() && dt->is_string(), where, "missing or non-string \"dtype\"");
      const StoredDType* stored = find_stored_dtype(dt->get<std::string>());
      PT_CHECK(stored, where, "unsupported dtype ", dt->get<std::string>(), " (supported: ", supported_dtype_list(),
               ")");
      PT_CHECK(sh != v.end() && sh->is_array(), where, "missing \"shape\" list");
      Entry e;
      e.info.dtype = stored->dtype;
      e.info.stored_dtype = stored->name;
      // Every extent and two running products are checked: the bytes, and the extents counted as at least 1 (the
      // outermost stride), which a zero extent would otherwise hide ([0, 2^62, 2^62] holds 0 bytes).
      uint64_t nbytes = stored->size;
      int64_t stride_extent = 1;
      for (auto& d : *sh) {
        PT_CHECK(d.is_number_unsigned(), where, "shape must hold non-negative integers, found ", json_excerpt(*sh));
        const uint64_t dim = d.get<uint64_t>();
        PT_CHECK(dim <= uint64_t(INT64_MAX) && !__builtin_mul_overflow(nbytes, dim, &nbytes) &&
                     !__builtin_mul_overflow(stride_extent, std::max<int64_t>(int64_t(dim), 1), &stride_extent),
                 where, "shape ", json_excerpt(*sh), " is too large");
        e.info.shape.push_back(int64_t(dim));
      }
      PT_CHECK(off != v.end() && off->is_array() && off->size() == 2 && (*off)[0].is_number_unsigned() &&
                   (*off)[1].is_number_unsigned(),
               where, "\"data_offsets\" must be [begin, end] with non-negative integers, found ",
               off == v.end() ? std::string("nothing") : json_excerpt(*off));
      e.begin = (*off)[0].get<uint64_t>();
      e.end = (*off)[1].get<uint64_t>();
      PT_CHECK(e.begin <= e.end, where, "data_offsets ", offsets_str(e.begin, e.end), " end before they begin");
      PT_CHECK(e.end - e.begin == nbytes, where, "data_offsets ", offsets_str(e.begin, e.end), " hold ",
               e.end - e.begin, " bytes but ", stored->name, " ", shape_str(e.info.shape), " needs ", nbytes);
      entries_.emplace(name, std::move(e));
    }

    // Sorted by offset, the tensors must tile the data section exactly: no overlap, no gap, no slack.
    std::vector<std::tuple<uint64_t, uint64_t, const std::string*>> order;
    for (auto& [name, e] : entries_) order.emplace_back(e.begin, e.end, &name);
    std::sort(order.begin(), order.end());
    uint64_t expected = 0;
    const std::string* prev = nullptr;
    for (auto& [b, e, name] : order) {
      PT_CHECK(b == expected, "safetensors ", path, ": tensor ", printable(*name), ": data_offsets ", offsets_str(b, e),
               b < expected ? " overlap " : " leave a gap after ",
               prev ? "tensor " + printable(*prev) : std::string("the start of the data"), " (expected begin ", expected,
               ")");
      expected = e;
      prev = name;
    }
    PT_CHECK(expected == size - data_start_, "safetensors ", path, ": truncated or padded: the header describes ",
             expected, " bytes of tensor data but the file has ", size - data_start_, " after the ", n, "-byte header");
  };
  try {
    validate();
  } catch (...) {
    close();
    throw;
  }
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (auto& kv : entries_) out.push_back(kv.first);
  return out;
}

const SafetensorsFile::Entry& SafetensorsFile::entry(const std::string& name) const {
  auto it = entries_.find(name);
  PT_CHECK(it != entries_.end(), "safetensors ", path_, ": no tensor named ", name, " (the file has ", entries_.size(),
           " tensors)");
  return it->second;
}

SafetensorsInfo SafetensorsFile::info(const std::string& name) const { return entry(name).info; }

void SafetensorsFile::read_bytes(void* out, uint64_t n, uint64_t at) const {
  uint64_t done = 0;
  while (done < n) {
    const ssize_t got = ::pread(fd_, static_cast<char*>(out) + done, size_t(n - done), off_t(at + done));
    if (got < 0 && errno == EINTR) continue;
    PT_CHECK(got > 0, "safetensors ", path_, ": reading ", n, " bytes at offset ", at, " failed: ",
             got < 0 ? std::strerror(errno) : "the file is shorter than when it was opened");
    done += uint64_t(got);
  }
}

std::string SafetensorsFile::stored_bytes(const std::string& name) const {
  const Entry& e = entry(name);
  std::string out(e.end - e.begin, '\0');
  read_bytes(out.data(), out.size(), data_start_ + e.begin);
  return out;
}

namespace {

// n stored floating elements at src (little-endian, unaligned) converted into out as dtype.
void convert_floats(DType stored, const uint8_t* src, DType dtype, void* out, int64_t n) {
  switch (stored) {
    case DType::f16:
      return store_floats(dtype, out, n, [&](int64_t i) { return f16_to_float(load_at<uint16_t>(src, i)); });
    case DType::bf16:
      return store_floats(dtype, out, n, [&](int64_t i) { return bf16_to_float(load_at<uint16_t>(src, i)); });
    case DType::f32:
      return store_floats(dtype, out, n, [&](int64_t i) { return load_at<float>(src, i); });
    case DType::f64:
      return store_floats(dtype, out, n, [&](int64_t i) { return load_at<double>(src, i); });
    default:
      PT_FAIL("safetensors: internal error: unexpected stored dtype");
  }
}

}  // namespace

// The file is read with pread, never mapped: a mapping's pages count in the resident set until they are dropped,
// and the kernel maps neighbouring pages around each fault, so a streamed walk over a memory-mapped model kept
// about half of every shard it had read resident. pread copies from the page cache, which is not this process's.
void SafetensorsFile::convert_to_host(const Entry& e, const std::string& name, DType dtype, void* out) const {
  const int64_t n = shape_numel(e.info.shape);
  const DType stored = e.info.dtype;
  if (n == 0) return;
  if (stored == dtype) return read_bytes(out, e.end - e.begin, data_start_ + e.begin);
  PT_CHECK(is_floating(stored) && is_floating(dtype), "safetensors ", path_, ": tensor ", name, " is stored as ",
           e.info.stored_dtype, " and cannot be read as ", dtype_name(dtype),
           " (only floating data converts between dtypes)");
  // Converted through a bounded buffer (1 MiB of stored bytes at a time), not a copy of the whole tensor.
  const int64_t width = int64_t(dtype_size(stored)), chunk = int64_t(1 << 20) / width;
  std::vector<uint8_t> buffer(size_t(std::min(n, chunk) * width));
  for (int64_t first = 0; first < n; first += chunk) {
    const int64_t count = std::min(chunk, n - first);
    read_bytes(buffer.data(), uint64_t(count * width), data_start_ + e.begin + uint64_t(first * width));
    convert_floats(stored, buffer.data(), dtype, static_cast<uint8_t*>(out) + first * int64_t(dtype_size(dtype)), count);
  }
}

Tensor SafetensorsFile::read(const std::string& name, DType dtype, Device device) const {
  const Entry& e = entry(name);
  Tensor out = Tensor::empty(e.info.shape, dtype, Device::cpu);
  convert_to_host(e, name, dtype, out.data_ptr());
  return out.to(device);
}

void SafetensorsFile::read_into(const std::string& name, const Tensor& dst) const {
  const Entry& e = entry(name);
  PT_CHECK(dst.defined(), "safetensors ", path_, ": tensor ", name, ": read_into an undefined tensor");
  PT_CHECK(dst.shape() == e.info.shape, "safetensors ", path_, ": tensor ", name, ": expected shape ",
           shape_str(dst.shape()), " but the file has ", shape_str(e.info.shape));
  if (dst.device() == Device::cpu && dst.is_contiguous()) {
    convert_to_host(e, name, dst.dtype(), dst.data_ptr());
  } else {
    Tensor tmp = Tensor::empty(e.info.shape, dst.dtype(), Device::cpu);  // the one host copy of this tensor
    convert_to_host(e, name, dst.dtype(), tmp.data_ptr());
    Tensor(dst).copy_(tmp);
  }
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    header["__metadata__"] = nlohmann::ordered_json::object();
    for (auto& [k, v] : metadata) header["__metadata__"][k] = v;
  }
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (auto& [name, t] : tensors) {
    PT_CHECK(!name.empty() && name != "__metadata__", "write_safetensors ", path, ": invalid tensor name '", name, "'");
    PT_CHECK(seen.insert(name).second, "write_safetensors ", path, ": tensor ", name, " is given twice");
    PT_CHECK(t.defined(), "write_safetensors ", path, ": tensor ", name, " is undefined");
    header[name] = {{"dtype", safetensors_dtype_name(t.dtype())},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    PT_FAIL("write_safetensors ", path, ": a tensor name or metadata entry is not valid UTF-8: ", e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // the data section then starts 8-byte aligned

  AtomicFile file(path);  // the target is replaced only once every byte is on disk
  const uint64_t n = text.size();
  file.write(&n, 8);
  file.write(text);
  for (auto& [name, t] : tensors) {
    Tensor c = t.to(Device::cpu).contiguous();  // one tensor at a time: never the whole set in memory
    if (c.nbytes() > 0) file.write(c.data_ptr(), c.nbytes());
  }
  file.commit();
}

}  // namespace pt::nn
