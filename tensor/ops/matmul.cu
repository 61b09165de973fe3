// cuBLAS side of the matrix products. matmul.cpp hands over canonical 3-D views (see there): C is
// row-major [batch, M, N], A and B are row- or column-major per matrix with one batch stride.
// cuBLAS is column-major, so a row-major C = op(A)·op(B) is computed as the column-major
// Cᵀ = op(B)ᵀ·op(A)ᵀ: the same buffers and transpose flags with A and B swapped and M, N swapped.
#include <algorithm>

#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/cuda_context.h"
#include "tensor/ops/cuda_ops.h"

namespace pt::cuda_ops {
namespace {

cudaDataType cublas_dtype(DType t) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::f64: return CUDA_R_64F;
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    default: PT_FAIL("gemm: dtype ", dtype_name(t), " not supported on cuda (allowed: f32, f64, f16, bf16)");
  }
}

// A canonical operand as cuBLAS sees it: pointer, leading dimension, batch stride, transpose flag.
struct Operand {
  const void* ptr;
  int ld;
  long long batch_stride;
  cublasOperation_t op;
};
Operand operand(const Tensor& t3, bool trans) {
  const bool row_major = t3.stride(2) == 1 && t3.stride(1) >= std::max<int64_t>(1, t3.size(2));
  // Row-major storage read column-major is already the transpose cuBLAS needs for the Cᵀ trick;
  // column-major storage is a transposed row-major matrix, so the flag flips.
  const bool blas_trans = row_major ? trans : !trans;
  return {t3.data_ptr(), int(row_major ? t3.stride(1) : t3.stride(2)),
          t3.size(0) == 1 ? 0LL : (long long)t3.stride(0), blas_trans ? CUBLAS_OP_T : CUBLAS_OP_N};
}

}  // namespace

void gemm(const Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, double alpha, double beta) {
  const int batch = int(c.size(0)), m = int(c.size(1)), n = int(c.size(2));
  const int k = int(trans_a ? a.size(1) : a.size(2));
  const Operand oa = operand(a, trans_a), ob = operand(b, trans_b);
  const cudaDataType dt = cublas_dtype(c.dtype());
  const long long sc = batch == 1 ? (long long)m * c.stride(1) : (long long)c.stride(0);
  cublasHandle_t handle = pt::cuda::cublas_handle();
  if (c.dtype() == DType::f64) {
    const double al = alpha, be = beta;
    PT_CUBLAS_CHECK(cublasGemmStridedBatchedEx(handle, ob.op, oa.op, n, m, k, &al, ob.ptr, dt, ob.ld,
                                               ob.batch_stride, oa.ptr, dt, oa.ld, oa.batch_stride, &be,
                                               c.data_ptr(), dt, int(c.stride(1)), sc, batch,
                                               CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT));
    return;
  }
  // f16/bf16 inputs accumulate in f32 and write their own dtype; TF32 only when the user opted in.
  const cublasComputeType_t compute =
      c.dtype() == DType::f32 && allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const float al = float(alpha), be = float(beta);
  PT_CUBLAS_CHECK(cublasGemmStridedBatchedEx(handle, ob.op, oa.op, n, m, k, &al, ob.ptr, dt, ob.ld,
                                             ob.batch_stride, oa.ptr, dt, oa.ld, oa.batch_stride, &be,
                                             c.data_ptr(), dt, int(c.stride(1)), sc, batch, compute,
                                             CUBLAS_GEMM_DEFAULT));
}

void syrk(const Tensor& h, const Tensor& x, double alpha, double beta) {
  const int64_t n = x.size(0), d = x.size(1), ldh = h.stride(0);
  // Row-major X [n, d] read column-major is Xᵀ [d, n]: H = Xᵀ·(Xᵀ)ᵀ is the non-transposed syrk.
  // Column-major X is X itself: H = Xᵀ·X is the transposed syrk.
  const bool row_major = x.stride(1) == 1 && x.stride(0) >= d;
  const cublasOperation_t op = row_major ? CUBLAS_OP_N : CUBLAS_OP_T;
  const int ldx = int(row_major ? x.stride(0) : x.stride(1));
  cublasHandle_t handle = pt::cuda::cublas_handle();
  // Column-major lower triangle = row-major upper triangle of H: the one syrk_ promises (no mirror, see ops.h).
  if (h.dtype() == DType::f64) {
    const double al = alpha, be = beta;
    PT_CUBLAS_CHECK(cublasDsyrk(handle, CUBLAS_FILL_MODE_LOWER, op, int(d), int(n), &al, x.data<double>(), ldx,
                                &be, h.data<double>(), int(ldh)));
  } else {
    const float al = float(alpha), be = float(beta);
    PT_CUBLAS_CHECK(cublasSsyrk(handle, CUBLAS_FILL_MODE_LOWER, op, int(d), int(n), &al, x.data<float>(), ldx,
                                &be, h.data<float>(), int(ldh)));
  }
}

}  // namespace pt::cuda_ops
