// Benchmark helpers: CUDA-event timing for manual-time GPU cases, and the common counters.
#pragma once
#include <benchmark/benchmark.h>

#include "tensor/ops.h"
#if PT_CUDA
#include <cuda_runtime.h>

#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/cuda_context.h"
#endif

namespace pt::bench {

// Skips the case (reported as an error row, not a number) when no GPU is usable.
inline bool require_cuda(benchmark::State& state) {
  if (cuda_is_available()) return true;
  state.SkipWithError("no CUDA device");
  return false;
}

// Times `fn` once per iteration with CUDA events on the current stream; sets the manual time.
template <class F> void time_cuda(benchmark::State& state, F&& fn) {
#if PT_CUDA
  cudaEvent_t start, stop;
  PT_CUDA_CHECK(cudaEventCreate(&start));
  PT_CUDA_CHECK(cudaEventCreate(&stop));
  fn();  // warm-up (allocator, cuBLAS heuristics)
  for (auto _ : state) {
    PT_CUDA_CHECK(cudaEventRecord(start, cuda::current_stream()));
    fn();
    PT_CUDA_CHECK(cudaEventRecord(stop, cuda::current_stream()));
    PT_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    PT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(double(ms) / 1e3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
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
