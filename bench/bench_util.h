// Benchmark helpers: CUDA-event timing for manual-time GPU cases, and the common counters.
#pragma once
#include <benchmark/benchmark.h>

#include "lab/roofline.h"
#include "tensor/ops.h"

namespace pt::bench {

// Skips the case (reported as an error row, not a number) when no GPU is usable.
inline bool require_cuda(benchmark::State& state) {
  if (cuda_is_available()) return true;
  state.SkipWithError("no CUDA device");
  return false;
}

// Times `fn` once per iteration with CUDA events on the current stream (lab::time_once); sets the manual time.
template <class F> void time_cuda(benchmark::State& state, F&& fn) {
#if PT_CUDA
  fn();  // warm-up (allocator, cuBLAS heuristics)
  for (auto _ : state) state.SetIterationTime(lab::time_once(Device::cuda, fn));
#else
  (void)fn;
  state.SkipWithError("built without CUDA");
#endif
}

inline void set_flops(benchmark::State& state, double flops_per_iter) {
  state.counters["FLOP/s"] = benchmark::Counter(flops_per_iter, benchmark::Counter::kIsIterationInvariantRate);
}
inline void set_bytes(benchmark::State& state, double bytes_per_iter) {
  state.SetBytesProcessed(int64_t(bytes_per_iter) * state.iterations());
}

}  // namespace pt::bench
