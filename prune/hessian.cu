// The bf16 Hessian update on CUDA: H = alpha·XᵀX + beta·H with bf16 X and fp32 accumulation, one cuBLAS
// GemmEx on tensor cores (cuBLAS has no real bf16 syrk). It writes both triangles, but only the upper one is
// promised (like syrk_): HessianAccumulator mirrors it once, when the finished Hessian is read.
#include "prune/hessian.h"
#include "tensor/ops.h"
#include "tensor/ops/cuda_common.cuh"

namespace pt::prune::detail {

void cuda_syrk_bf16(const Tensor& h, const Tensor& x_bf16, double alpha, double beta) {
  PT_CHECK(h.is_contiguous() && x_bf16.is_contiguous() && x_bf16.dtype() == DType::bf16 && x_bf16.dim() == 2,
           "cuda_syrk_bf16: needs contiguous H and a contiguous bf16 X, got ", h.describe(), ", ", x_bf16.describe());
  const int64_t n = x_bf16.size(0), d = x_bf16.size(1);
  PT_CHECK(h.dim() == 2 && h.size(0) == d && h.size(1) == d && h.dtype() == DType::f32, "cuda_syrk_bf16: H ",
           h.describe(), " should be f32 [", d, ", ", d, "] for X ", x_bf16.describe());
  PT_CHECK(n <= INT32_MAX && d <= INT32_MAX, "cuda_syrk_bf16: X ", x_bf16.describe(), " exceeds cuBLAS's int sizes");
  if (d == 0) return;  // an empty H: nothing to update (and cuBLAS rejects a leading dimension of 0)
  if (n == 0) {
    unary_(h, h, UnaryOp::mul_scalar, beta);
    return;
  }
  // Row-major X [n, d] is column-major Xᵀ [d, n] (ld d): Xᵀ·(Xᵀ)ᵀ = XᵀX, symmetric, so layout does not matter.
  const float al = float(alpha), be = float(beta);
  PT_CUBLAS_CHECK(cublasGemmEx(pt::cuda::cublas_handle(), CUBLAS_OP_N, CUBLAS_OP_T, int(d), int(d), int(n), &al,
                               x_bf16.data_ptr(), CUDA_R_16BF, int(d), x_bf16.data_ptr(), CUDA_R_16BF, int(d), &be,
                               h.data<float>(), CUDA_R_32F, int(d), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace pt::prune::detail
