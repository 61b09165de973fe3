#include "tensor/storage.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

#include "tensor/cpu_caching_allocator.h"
#include "tensor/error.h"

#if PT_CUDA
#include <cuda_runtime.h>

#include "tensor/cuda/caching_allocator.h"
#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/cuda_context.h"
#endif

namespace pt {

namespace {
std::atomic<bool> g_poison{false};
}  // namespace

void set_poison_allocations(bool on) { g_poison = on; }
bool poison_allocations() { return g_poison; }

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device == Device::cpu) {
    data_ = cpu::allocate(nbytes);
    if (g_poison) std::memset(data_, 0xff, nbytes);
    return;
  }
#if PT_CUDA
  PT_CHECK(cuda_is_available(), "cannot allocate ", nbytes, " bytes on cuda: no usable CUDA device");
  data_ = cuda::allocate(nbytes);
  if (g_poison && nbytes) PT_CUDA_CHECK(cudaMemsetAsync(data_, 0xff, nbytes, cuda::current_stream()));
#else
  PT_FAIL("cannot allocate on cuda: this build has no CUDA support");
#endif
}

Storage::Storage(size_t nbytes, PinnedTag) : nbytes_(nbytes), device_(Device::cpu) {
#if PT_CUDA
  if (cuda_is_available()) {
    PT_CUDA_CHECK(cudaHostAlloc(&data_, std::max<size_t>(nbytes, 1), cudaHostAllocDefault));
    pinned_ = true;
    return;
  }
#endif
  data_ = cpu::allocate(nbytes);
}

std::shared_ptr<Storage> Storage::pinned_host(size_t nbytes) {
  return std::shared_ptr<Storage>(new Storage(nbytes, PinnedTag{}));
}

Storage::~Storage() {
  if (!data_) return;
  if (pinned_) {
#if PT_CUDA
    cudaFreeHost(data_);
#endif
    return;
  }
  if (device_ == Device::cpu) {
    cpu::deallocate(data_);
  } else {
#if PT_CUDA
    cuda::deallocate(data_);
#endif
  }
}

}  // namespace pt
