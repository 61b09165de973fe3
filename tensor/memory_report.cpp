#include "tensor/memory_report.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "tensor/cpu_caching_allocator.h"
#include "tensor/device.h"
#if PT_CUDA
#include <cuda_runtime.h>

#include "tensor/cuda/caching_allocator.h"
#endif

namespace pt {

namespace {

// "VmHWM:   218316 kB" -> bytes; 0 when the file or the key is missing.
int64_t proc_kib_field(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) != 0) continue;
    std::istringstream fields(line.substr(key.size()));
    int64_t kib = 0;
    fields >> kib;
    return kib * 1024;
  }
  return 0;
}

bool g_rss_reset = false;  // whether the last reset_memory_peaks() could reset VmHWM

}  // namespace

void reset_memory_peaks() {
  // "5" resets the peak resident set size (Linux >= 4.0); a refusal leaves VmHWM covering the whole process.
  std::FILE* f = std::fopen("/proc/self/clear_refs", "w");
  g_rss_reset = f && std::fputs("5", f) >= 0;
  if (f) g_rss_reset = std::fclose(f) == 0 && g_rss_reset;
  cpu::reset_peak_stats();
#if PT_CUDA
  if (cuda_is_available()) cuda::reset_peak_stats();
#endif
}

MemoryPeaks memory_peaks() {
  MemoryPeaks m;
  m.host_rss_bytes = proc_kib_field("/proc/self/status", "VmHWM:");
  m.host_rss_reset = g_rss_reset;
  const cpu::AllocatorStats h = cpu::allocator_stats();
  m.host_tensor_bytes = int64_t(h.peak_allocated_bytes);
  m.host_pool_bytes = int64_t(h.peak_reserved_bytes);
#if PT_CUDA
  if (cuda_is_available()) {
    const cuda::AllocatorStats d = cuda::allocator_stats();
    m.device_bytes = int64_t(d.peak_reserved_bytes);
    m.device_tensor_bytes = int64_t(d.peak_allocated_bytes);
  }
#endif
  return m;
}

int64_t current_rss_bytes() { return proc_kib_field("/proc/self/status", "VmRSS:"); }
int64_t host_available_bytes() { return proc_kib_field("/proc/meminfo", "MemAvailable:"); }

int64_t device_free_bytes() {
#if PT_CUDA
  if (!cuda_is_available()) return 0;
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return int64_t(free_b);
#else
  return 0;
#endif
}

std::string format_bytes(int64_t bytes) {
  char buf[32];
  const double b = double(bytes);
  if (b >= 1e9) std::snprintf(buf, sizeof buf, "%.2f GB", b / 1e9);
  else if (b >= 1e6) std::snprintf(buf, sizeof buf, "%.1f MB", b / 1e6);
  else if (b >= 1e3) std::snprintf(buf, sizeof buf, "%.1f kB", b / 1e3);
  else std::snprintf(buf, sizeof buf, "%lld B", (long long)bytes);
  return buf;
}

}  // namespace pt
