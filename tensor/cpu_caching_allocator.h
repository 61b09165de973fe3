// CPU caching allocator, the host twin of tensor/cuda/caching_allocator: freed blocks go back to a size-bucketed
// pool and are reused, so the temporaries of a training step or a perplexity window cost no malloc/free and,
// above all, no fresh mapping (the kernel zeroes and faults in every page of a new large allocation: a quarter
// of the time of a CPU perplexity loop before this existed). Small requests round up to 512 B, large ones
// (>= 1 MiB) to 2 MiB, and large blocks ask for transparent huge pages. Every block is 64-byte aligned.
//
// A cap bounds the bytes held in the pool (not in live tensors): PT_CPU_CACHE_MB, default 1/8 of the
// machine's memory; 0 turns caching off (every free goes straight back to the system). When a freed block
// would push the pool over the cap, the largest cached blocks are released first. And the cache never costs
// resident memory at the peak: a large request that misses and would lift the pool above its peak so far (since
// reset_peak_stats) first releases cached blocks, so the pool's peak is the live tensors' (plus small blocks).
// Large blocks are mapped and unmapped directly (2 MiB aligned), so a released one leaves the resident set.
// Thread-safe (one mutex): tensors may be freed on any thread.
#pragma once
#include <cstddef>

namespace pt::cpu {

struct AllocatorStats {
  size_t allocated_bytes = 0;       // in live blocks
  size_t reserved_bytes = 0;        // live + cached
  size_t cached_bytes = 0;          // in the pool, free for reuse
  size_t peak_allocated_bytes = 0;  // since the start, or since the last reset_peak_stats()
  size_t peak_reserved_bytes = 0;   // live + cached at their highest (what the pool held from the system)
  size_t num_system_allocs = 0;     // blocks obtained from the system so far
  size_t num_cache_hits = 0;        // requests served from the pool
  size_t num_releases = 0;          // cached blocks given back to the system (cap, empty_cache)
  size_t cache_limit_bytes = 0;
};

void* allocate(size_t nbytes);
void deallocate(void* ptr);
void empty_cache();                      // give every cached block (and the C heap's free pages) back to the system
void set_cache_limit(size_t bytes);      // 0: no caching; releases cached blocks over the new limit
AllocatorStats allocator_stats();
void reset_peak_stats();                 // the peaks restart from what is allocated / reserved now

}  // namespace pt::cpu
