// Peak memory of this process over a phase (a train_prune stage, a benchmark case): the host's resident set
// (VmHWM of /proc/self/status, which writing "5" to /proc/self/clear_refs sets back to the current resident set)
// and the device memory the CUDA caching allocator held, with both allocators' own peaks beside them so the
// numbers can be read against each other (the resident set also counts code, libraries and mapped files).
#pragma once
#include <cstdint>
#include <string>

namespace pt {

struct MemoryPeaks {
  int64_t host_rss_bytes = 0;       // VmHWM: since reset_memory_peaks(), or since the start when it could not reset
  bool host_rss_reset = false;      // false: the kernel refused the reset, host_rss_bytes covers the whole process
  int64_t host_tensor_bytes = 0;    // CPU allocator: live tensor bytes at their highest
  int64_t host_pool_bytes = 0;      // CPU allocator: live + cached at their highest
  int64_t device_bytes = 0;         // CUDA allocator: what it held from cudaMalloc at its highest (0 without CUDA)
  int64_t device_tensor_bytes = 0;  // CUDA allocator: live tensor bytes at their highest
};

// Starts a phase: the resident-set high-water mark and both allocators' peaks restart from what is in use now.
void reset_memory_peaks();
// The peaks since the last reset_memory_peaks() (since the start before the first).
MemoryPeaks memory_peaks();

int64_t current_rss_bytes();      // VmRSS (0 where /proc is missing)
int64_t host_available_bytes();   // MemAvailable of /proc/meminfo (0 where /proc is missing)
int64_t device_free_bytes();      // free memory on the current CUDA device (0 without one)
std::string format_bytes(int64_t bytes);  // "1.23 GB", "512.0 MB", "840 B" (decimal units)

}  // namespace pt
