// CUDA caching allocator: freed blocks go back to a size-bucketed pool and are reused, so steady-state
// training and pruning loops make no cudaMalloc/cudaFree calls. Small requests round up to 512 B, large
// ones to 2 MiB. On an out-of-memory error the pool is released and the allocation retried once.
// Single-stream use: a block freed while kernels on the current stream still read it is safe to reuse
// by later work on that same stream (stream order), which is how every op here runs.
#pragma once
#include <cstddef>

namespace pt::cuda {

struct AllocatorStats {
  size_t allocated_bytes = 0;   // in live blocks
  size_t reserved_bytes = 0;    // live + cached
  size_t peak_allocated_bytes = 0;  // since the start, or since the last reset_peak_stats()
  size_t peak_reserved_bytes = 0;   // what the pool held from cudaMalloc at its highest
  size_t num_cuda_mallocs = 0;  // total cudaMalloc calls so far
  size_t num_cache_hits = 0;
};

void* allocate(size_t nbytes);
void deallocate(void* ptr);
void empty_cache();  // cudaFree every cached (unused) block
AllocatorStats allocator_stats();
void reset_peak_stats();  // the peaks restart from what is allocated / reserved now

}  // namespace pt::cuda
