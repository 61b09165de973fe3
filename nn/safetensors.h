// Safetensors files (the Hugging Face weight format): a validating reader (pread, never memory-mapped: the bytes of
// a tensor pass through the page cache into their destination, nothing of the file stays in the resident set) and
// an atomic writer.
// Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the raw little-endian C-order data.
// open() checks every structural rule before any tensor is read, so a corrupt or truncated download fails with
// one line naming the file (and tensor) instead of producing garbage weights.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace pt::nn {

struct SafetensorsInfo {
  DType dtype = DType::f32;  // BOOL is stored as u8 (0/1)
  Shape shape;
  std::string stored_dtype;  // as written in the header: "F16", "BF16", "F32", "BOOL", ...
};

class SafetensorsFile {
 public:
  SafetensorsFile() = default;
  explicit SafetensorsFile(const std::string& path) { open(path); }
  ~SafetensorsFile() { close(); }
  SafetensorsFile(SafetensorsFile&& o) noexcept { *this = std::move(o); }
  SafetensorsFile& operator=(SafetensorsFile&& o) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  // Opens the file read-only and validates it fully; throws pt::Error naming the path on any defect.
  void open(const std::string& path);
  void close();
  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

  std::vector<std::string> names() const;  // sorted
  bool has(const std::string& name) const { return entries_.count(name) != 0; }
  SafetensorsInfo info(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // A fresh contiguous tensor. Floating data (F16/BF16/F32/F64) converts to any floating dtype; integer and
  // bool data only reads as its own dtype.
  Tensor read(const std::string& name, DType dtype, Device device = Device::cpu) const;
  // Converts straight into dst's storage (any dtype/device/strides the conversion rules above allow).
  // A CUDA (or strided) dst goes through one temporary CPU tensor the size of this one tensor.
  void read_into(const std::string& name, const Tensor& dst) const;
  // A copy of the tensor's bytes as stored (little-endian, its stored dtype).
  std::string stored_bytes(const std::string& name) const;

 private:
  struct Entry {
    SafetensorsInfo info;
    uint64_t begin = 0, end = 0;  // relative to the data section
  };
  const Entry& entry(const std::string& name) const;
  void convert_to_host(const Entry& e, const std::string& name, DType dtype, void* out) const;
  void read_bytes(void* out, uint64_t n, uint64_t at) const;  // exactly n bytes at file offset `at`, or throws

  std::string path_;
  int fd_ = -1;  // open read-only while the object is
  size_t size_ = 0;
  uint64_t data_start_ = 0;  // 8 + N
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (in the order given) with an optional "__metadata__" string map, exactly as the format
// specifies. Atomic: writes PATH.tmp beside PATH, fsyncs it, renames it over PATH and fsyncs the folder.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// "F16" <-> DType for the stored dtypes this reader supports (BOOL maps to u8 on reading).
const char* safetensors_dtype_name(DType t);

}  // namespace pt::nn
