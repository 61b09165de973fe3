// Measuring a device's roofline, and timing one call.
#include "lab/roofline.h"

#include <algorithm>
#include <chrono>

#include "tensor/ops.h"
#if PT_CUDA
#include <cuda_runtime.h>

#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/cuda_context.h"
#endif

namespace pt::lab {

double time_once(Device device, const std::function<void()>& fn) {
#if PT_CUDA
  if (device == Device::cuda) {
    cudaEvent_t start, stop;
    PT_CUDA_CHECK(cudaEventCreate(&start));
    PT_CUDA_CHECK(cudaEventCreate(&stop));
    PT_CUDA_CHECK(cudaEventRecord(start, cuda::current_stream()));
    fn();
    PT_CUDA_CHECK(cudaEventRecord(stop, cuda::current_stream()));
    PT_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    PT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    return double(ms) / 1e3;
  }
#endif
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

namespace {

double best_of(int runs, Device device, const std::function<void()>& fn) {
  fn();  // warm-up: allocator, BLAS threads, cuBLAS heuristics
  double best = 1e30;
  for (int i = 0; i < runs; ++i) best = std::min(best, time_once(device, fn));
  return best;
}

double gemm_flops(int64_t n, DType dtype, Device device) {
  Generator gen(7);
  const Tensor a = Tensor::uniform({n, n}, -1, 1, gen, DType::f32, device).to(dtype);
  const Tensor b = Tensor::uniform({n, n}, -1, 1, gen, DType::f32, device).to(dtype);
  Tensor c = Tensor::zeros({n, n}, dtype, device);
  const double s = best_of(3, device, [&] { gemm_(c, a, b, false, false, 1.0, 0.0); });
  return 2.0 * double(n) * double(n) * double(n) / s;
}

}  // namespace

Peaks measure_peaks(Device device) {
  const bool cuda = device == Device::cuda;
  const int64_t n = cuda ? (int64_t(1) << 28) : (int64_t(1) << 25);  // floats per array: 1 GB / 128 MB
  Peaks p;
  {  // a = b + c: read two arrays, write one (12 bytes an element, STREAM's count)
    Generator gen(3);
    const Tensor b = Tensor::uniform({n}, -1, 1, gen, DType::f32, device);
    const Tensor c = Tensor::uniform({n}, -1, 1, gen, DType::f32, device);
    Tensor a = Tensor::empty({n}, DType::f32, device);
    const auto triad = [&] {
      if (cuda) return binary_(a, b, c, BinaryOp::add);
      float* pa = a.data<float>();
      const float *pb = b.data<float>(), *pc = c.data<float>();
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) pa[i] = pb[i] + pc[i];
    };
    p.bytes_per_second = 12.0 * double(n) / best_of(5, device, triad);
  }
  const int64_t m = cuda ? 8192 : 2048;
  p.flops_f32 = gemm_flops(m, DType::f32, device);
  p.flops_bf16 = cuda ? gemm_flops(m, DType::bf16, device) : p.flops_f32;
  p.how = pt::detail::concat("measured: a = b + c over 3 x ", 4 * n >> 20, " MB, best of 5; ", m, "^3 GEMM",
                             cuda ? " in f32 and bf16" : " in f32", ", best of 3");
  return p;
}

double roofline_percent(const kernels::Cost& cost, double seconds, Device device, const Peaks& peaks) {
  const double flops_peak = cost.tensor_cores && device == Device::cuda ? peaks.flops_bf16 : peaks.flops_f32;
  const double roof = std::max(peaks.bytes_per_second > 0 ? cost.bytes / peaks.bytes_per_second : 0.0,
                               flops_peak > 0 ? cost.flops / flops_peak : 0.0);
  return seconds > 0 ? 100.0 * roof / seconds : 0.0;
}

}  // namespace pt::lab
