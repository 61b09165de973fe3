// Storage: one owned allocation on one device. Tensors share it through shared_ptr; views never own.
// CPU memory is 64-byte aligned; CUDA memory comes from the caching allocator (tensor/cuda/).
#pragma once
#include <cstddef>
#include <memory>

#include "tensor/device.h"

namespace pt {

// Test aid: when on, every new allocation (CPU and CUDA) is filled with 0xFF bytes (NaN for floats),
// so an output element an op forgets to write shows up as NaN in the parity tests.
void set_poison_allocations(bool on);
bool poison_allocations();

class Storage {
 public:
  Storage(size_t nbytes, Device device);
  // Page-locked host memory (a CPU storage): copies between it and the GPU run asynchronously on a stream, so a
  // layer can be loaded while the previous one computes. Plain host memory in a build without CUDA or without
  // a usable device.
  static std::shared_ptr<Storage> pinned_host(size_t nbytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  struct PinnedTag {};
  Storage(size_t nbytes, PinnedTag);
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  bool pinned_ = false;  // from cudaHostAlloc
};

}  // namespace pt
