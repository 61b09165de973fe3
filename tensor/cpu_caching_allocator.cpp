#include "tensor/cpu_caching_allocator.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

#include "tensor/error.h"

namespace pt::cpu {

namespace {

constexpr size_t kAlignment = 64;
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeThreshold = 1 << 20;  // 1 MiB
constexpr size_t kLargeRound = 2 << 20;      // 2 MiB: one transparent huge page

size_t round_size(size_t n) {
  if (n == 0) n = 1;
  if (n < kLargeThreshold) return (n + kSmallRound - 1) / kSmallRound * kSmallRound;
  return (n + kLargeRound - 1) / kLargeRound * kLargeRound;
}

size_t default_limit() {
  if (const char* env = std::getenv("PT_CPU_CACHE_MB")) {
    char* end = nullptr;
    const unsigned long long mb = std::strtoull(env, &end, 10);
    PT_CHECK(end != env && *end == '\0', "PT_CPU_CACHE_MB='", env,
             "' is not a whole number of MiB (0 turns the CPU allocation cache off)");
    return size_t(mb) << 20;
  }
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? size_t(pages) * size_t(page) / 8 : size_t(1) << 30;
}

// Large blocks are mapped directly, 2 MiB aligned, so that giving one back unmaps it at once: from the C heap
// (below glibc's adaptive mmap threshold, up to 32 MiB) a freed block stays resident until malloc_trim.
void* system_alloc(size_t size) {
  if (size < kLargeThreshold) return std::aligned_alloc(kAlignment, size);
  const size_t span = size + kLargeRound;
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const auto base = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t start = (base + kLargeRound - 1) / kLargeRound * kLargeRound;
  if (start > base) munmap(raw, start - base);
  if (const uintptr_t end = start + size, span_end = base + span; span_end > end)
    munmap(reinterpret_cast<void*>(end), span_end - end);
  void* p = reinterpret_cast<void*>(start);
  madvise(p, size, MADV_HUGEPAGE);  // fewer faults; advice only
  return p;
}

void system_free(void* ptr, size_t size) {
  if (size < kLargeThreshold) std::free(ptr);
  else munmap(ptr, size);
}

struct Pool {
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;  // size -> block, for best-fit lookup
  std::unordered_map<void*, size_t> live;     // block -> size
  AllocatorStats stats;
  bool limit_read = false;

  size_t limit() {
    if (!limit_read) {
      stats.cache_limit_bytes = default_limit();
      limit_read = true;
    }
    return stats.cache_limit_bytes;
  }
  void release(std::multimap<size_t, void*>::iterator it) {
    system_free(it->second, it->first);
    stats.cached_bytes -= it->first;
    stats.reserved_bytes -= it->first;
    stats.num_releases++;
    free_blocks.erase(it);
  }
  // Largest first: one big block frees the most room for the fewest future misses.
  void trim_to(size_t bytes) {
    while (stats.cached_bytes > bytes && !free_blocks.empty()) release(std::prev(free_blocks.end()));
  }
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: tensors freed by static destructors still find it
  return *p;
}

}  // namespace

void* allocate(size_t nbytes) {
  Pool& p = pool();
  const size_t size = round_size(nbytes);
  std::lock_guard<std::mutex> lock(p.mu);
  // Best fit, but never hand a much larger block to a request (it would pin memory the pool could reuse).
  auto it = p.free_blocks.lower_bound(size);
  const bool fits = it != p.free_blocks.end() &&
                    (size < kLargeThreshold ? it->first < kLargeThreshold && it->first <= 2 * size
                                            : it->first <= size + size / 8 + kLargeRound);
  void* ptr = nullptr;
  size_t got = size;
  if (fits) {
    ptr = it->second;
    got = it->first;
    p.free_blocks.erase(it);
    p.stats.cached_bytes -= got;
    p.stats.num_cache_hits++;
  } else {
    // A large miss never lifts the pool above its peak (since reset_peak_stats) while blocks of other sizes sit
    // in the cache: those go back first (largest first). Otherwise the resident set peaks at the live tensors
    // plus a cache of sizes the next step no longer asks for (74 MB over 389 MB of live tensors in a streamed
    // SparseGPT layer at F = 4096). Small misses are left alone: they cost little, and a small block must not
    // evict a large one.
    const size_t wanted = p.stats.reserved_bytes + size, peak = p.stats.peak_reserved_bytes;
    if (size >= kLargeThreshold && wanted > peak) {
      const size_t over = wanted - peak;
      p.trim_to(p.stats.cached_bytes > over ? p.stats.cached_bytes - over : 0);
    }
    ptr = system_alloc(size);
    if (!ptr && !p.free_blocks.empty()) {  // out of memory: give the pool back and try once more
      p.trim_to(0);
      ptr = system_alloc(size);
    }
    PT_CHECK(ptr != nullptr, "out of host memory allocating ", nbytes, " bytes (", p.stats.allocated_bytes,
             " bytes in use by tensors)");
    p.stats.num_system_allocs++;
    p.stats.reserved_bytes += size;
    p.stats.peak_reserved_bytes = std::max(p.stats.peak_reserved_bytes, p.stats.reserved_bytes);
  }
  p.live[ptr] = got;
  p.stats.allocated_bytes += got;
  p.stats.peak_allocated_bytes = std::max(p.stats.peak_allocated_bytes, p.stats.allocated_bytes);
  return ptr;
}

void deallocate(void* ptr) {
  if (!ptr) return;
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  auto it = p.live.find(ptr);
  if (it == p.live.end()) return;  // not ours: ignore rather than corrupt the pool
  const size_t size = it->second;
  p.live.erase(it);
  p.stats.allocated_bytes -= size;
  const size_t limit = p.limit();
  if (size > limit) {  // never cached: straight back to the system
    system_free(ptr, size);
    p.stats.reserved_bytes -= size;
    p.stats.num_releases++;
    return;
  }
  p.trim_to(limit - size);
  p.free_blocks.emplace(size, ptr);
  p.stats.cached_bytes += size;
}

void empty_cache() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  p.trim_to(0);
#if defined(__GLIBC__)
  // glibc keeps freed blocks below its (adaptive, up to 32 MiB) mmap threshold in its heap; give those pages back
  // too, so the resident set falls with the pool (a streamed walk relies on it between layers).
  malloc_trim(0);
#endif
}

void set_cache_limit(size_t bytes) {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mu);
  p.limit_read = true;
  p.stats.cache_limit_bytes = bytes;
  p.trim_to(bytes);
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
  p.limit();
  return p.stats;
}

}  // namespace pt::cpu
