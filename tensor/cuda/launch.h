// Grid sizes for the grid-stride kernels. Plain C++ (no CUDA header), so the CPU build tests it.
#pragma once
#include <cstdint>

// Marks the helpers that a kernel and a CPU test of its indexing share (the same definition as tensor/random.h).
#ifndef PT_HOST_DEVICE
#if defined(__CUDACC__)
#define PT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define PT_HOST_DEVICE inline
#endif
#endif

namespace pt::cuda {

inline constexpr int kThreads = 256;                  // threads per block of the element-wise kernels
inline constexpr int64_t kMaxGridBlocks = 65535 * 16;  // enough to fill any GPU; grid-stride loops cover the rest

// Blocks for `items` work items, `per_block` of them per block (threads for one item per thread, 1 for one row
// per block), for a kernel that loops grid-stride over the items and bounds-checks them. Never 0: a launch with
// an empty grid is a CUDA error even when there is nothing to do, so every launcher is safe at zero size here
// instead of in a special case of its own (the one block of an empty launch finds no item and exits).
constexpr unsigned grid_for(int64_t items, int64_t per_block = kThreads) {
  const int64_t blocks = items > 0 ? (items + per_block - 1) / per_block : 1;
  return unsigned(blocks < kMaxGridBlocks ? blocks : kMaxGridBlocks);
}

}  // namespace pt::cuda
