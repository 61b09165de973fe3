#include "tensor/cuda/caching_allocator.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <unordered_map>

#include "tensor/cuda/cuda_check.h"

namespace pt::cuda {

namespace {

constexpr size_t kSmallRound = 512;
constexpr size_t kLargeThreshold = 1 << 20;  // 1 MiB
constexpr size_t kLargeRound = 2 << 20;      // 2 MiB

size_t round_size(size_t n) {
  if (n == 0) n = 1;
  if (n < kLargeThreshold) return (n + kSmallRound - 1) / kSmallRound * kSmallRound;
  return (n + kLargeRound - 1) / kLargeRound * kLargeRound;
}

struct Pool {
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;    // size -> block, for best-fit lookup
  std::unordered_map<void*, size_t> live;       // block -> size
  AllocatorStats stats;

  void release_cached() {
    for (auto& [size, ptr] : free_blocks) {
      cudaFree(ptr);
      stats.reserved_bytes -= size;
    }
    free_blocks.clear();
  }
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: frees at exit would race the driver's teardown
  return *p;
}

}  // namespace

void* allocate(size_t nbytes) {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  size_t size = round_size(nbytes);
  // Best fit, but never hand a large block to a much smaller request (it would pin memory).
  auto it = p.free_blocks.lower_bound(size);
  bool fits = it != p.free_blocks.end() &&
              (size < kLargeThreshold ? it->first < kLargeThreshold && it->first <= 2 * size
                                      : it->first <= size + size / 8 + kLargeRound);
  if (fits) {
    void* ptr = it->second;
    size_t got = it->first;
    p.free_blocks.erase(it);
    p.live[ptr] = got;
    p.stats.allocated_bytes += got;
    p.stats.num_cache_hits++;
    p.stats.peak_allocated_bytes = std::max(p.stats.peak_allocated_bytes, p.stats.allocated_bytes);
    return ptr;
  }
  void* ptr = nullptr;
  cudaError_t e = cudaMalloc(&ptr, size);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    PT_CUDA_CHECK(cudaDeviceSynchronize());
    p.release_cached();
    e = cudaMalloc(&ptr, size);
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    PT_FAIL("CUDA out of memory allocating ", size, " bytes (", p.stats.allocated_bytes, " bytes in use by tensors, ",
            free_b, " of ", total_b, " bytes free on the device): ", cudaGetErrorString(e));
  }
  p.live[ptr] = size;
  p.stats.num_cuda_mallocs++;
  p.stats.allocated_bytes += size;
  p.stats.reserved_bytes += size;
  p.stats.peak_reserved_bytes = std::max(p.stats.peak_reserved_bytes, p.stats.reserved_bytes);
  p.stats.peak_allocated_bytes = std::max(p.stats.peak_allocated_bytes, p.stats.allocated_bytes);
  return ptr;
}

void deallocate(void* ptr) {
  if (!ptr) return;
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  auto it = p.live.find(ptr);
  if (it == p.live.end()) return;  // not ours: ignore rather than corrupt the pool
  p.stats.allocated_bytes -= it->second;
  p.free_blocks.emplace(it->second, ptr);
  p.live.erase(it);
}

void empty_cache() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  cudaDeviceSynchronize();
  p.release_cached();
}

void reset_peak_stats() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  p.stats.peak_allocated_bytes = p.stats.allocated_bytes;
  p.stats.peak_reserved_bytes = p.stats.reserved_bytes;
}

AllocatorStats allocator_stats() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  return p.stats;
}

}  // namespace pt::cuda
