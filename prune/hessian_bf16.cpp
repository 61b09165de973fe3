// The `bf16` variant of the Hessian update (registered in prune/kernel_families.cpp): the activations are stored as
// bf16, half the bytes of f32, and their products are accumulated in f32.
//   CPU   chunks of kChunkTokens tokens are widened into one f32 buffer that stays in cache, and each chunk is added
//         with one syrk (beta on the first chunk, 1 after): X is never held as f32 in full.
//   CUDA  one bf16 tensor-core GEMM (hessian.cu), what the fused variant runs for bf16 activations.
// With f32 activations it rounds them to bf16 first, so it computes the reference's function on rounded inputs: the
// lab checks it with the bf16 tolerance.
#include <algorithm>

#include "prune/hessian.h"
#include "tensor/ops.h"

namespace pt::prune::detail {

namespace {

constexpr int64_t kChunkTokens = 256;  // 256 tokens × 2048 columns × 4 bytes = 2 MB of f32: one L2's worth

void update_cpu(const Tensor& H, const Tensor& X16, double alpha, double beta) {
  const int64_t n = X16.size(0), d = X16.size(1);
  if (n == 0) return syrk_(H, Tensor::empty({0, d}, DType::f32, Device::cpu), alpha, beta);
  const Tensor chunk = Tensor::empty({std::min(n, kChunkTokens), d}, DType::f32, Device::cpu);
  const bfloat16_t* x = X16.data<bfloat16_t>();
  float* buf = chunk.data<float>();
  for (int64_t t0 = 0; t0 < n; t0 += kChunkTokens) {
    const int64_t rows = std::min(kChunkTokens, n - t0);
    const bfloat16_t* src = x + t0 * d;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows * d; ++i) buf[i] = bf16_to_float(src[i].bits);
    syrk_(H, chunk.narrow(0, 0, rows), alpha, t0 == 0 ? beta : 1.0);
  }
}

}  // namespace

kernels::Family<HessianUpdate>::Variant hessian_bf16_variant() {
  return {{.name = "bf16",
           .devices = {Device::cpu, Device::cuda},
           .dtypes = {DType::f32, DType::bf16},
           .summary = "bf16 activations, f32 accumulation: CPU chunks widened in cache + syrk; CUDA bf16 GEMM",
           .reduced_precision = true},
          [](const Tensor& H, const Tensor& X, double alpha, double beta) {
            const Tensor X16 = X.to(DType::bf16).contiguous();
#if PT_CUDA
            if (X16.is_cuda()) return cuda_syrk_bf16(H, X16, alpha, beta);
#endif
            update_cpu(H, X16, alpha, beta);
          }};
}

}  // namespace pt::prune::detail
