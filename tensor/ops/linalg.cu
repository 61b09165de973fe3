// cuSOLVER / cuBLAS side of the dense linear algebra. All matrices here are row-major; cuSOLVER and
// cuBLAS are column-major, and a row-major matrix read column-major is its transpose. So a row-major
// lower factor L (A = L·Lᵀ) is the column-major upper factor U = Lᵀ (A = Uᵀ·U, A symmetric): every
// fill mode flips. For trsm, op(A)·X = B in row-major is Xᵀ·op(A)ᵀ = Bᵀ in column-major: the side and
// fill mode flip, the transpose flag stays.
#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/cuda_context.h"
#include "tensor/ops/cuda_ops.h"

namespace pt::cuda_ops {
namespace {

constexpr int kThreads = 256;

cublasFillMode_t flipped_fill(bool upper) { return upper ? CUBLAS_FILL_MODE_LOWER : CUBLAS_FILL_MODE_UPPER; }

// Row-major n x n: zero the strict upper triangle (keep_lower) or the strict lower one.
template <class T>
__global__ void zero_triangle(T* a, int64_t n, bool keep_lower) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * n) return;
  const int64_t r = i / n, c = i % n;
  if (keep_lower ? c > r : c < r) a[i] = T(0);
}

// Row-major n x n: copy the lower (from_lower) or upper triangle onto the other one.
template <class T>
__global__ void mirror_triangle(T* a, int64_t n, bool from_lower) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * n) return;
  const int64_t r = i / n, c = i % n;
  if (from_lower ? c > r : c < r) a[i] = a[c * n + r];
}

template <class T>
void launch_triangle(bool zero, T* a, int64_t n, bool lower) {
  const int blocks = int(pt::cuda::ceil_div(n * n, kThreads));
  cudaStream_t s = pt::cuda::current_stream();
  if (zero) zero_triangle<<<blocks, kThreads, 0, s>>>(a, n, lower);
  else mirror_triangle<<<blocks, kThreads, 0, s>>>(a, n, lower);
  PT_CUDA_CHECK_LAUNCH();
}

// cuSOLVER's status word (devInfo) copied back to the host; this synchronises the stream.
int read_info(const Tensor& info) {
  int host = 0;
  cudaStream_t s = pt::cuda::current_stream();
  PT_CUDA_CHECK(cudaMemcpyAsync(&host, info.data_ptr(), sizeof(int), cudaMemcpyDeviceToHost, s));
  PT_CUDA_CHECK(cudaStreamSynchronize(s));
  return host;
}

// Thin overloads so the algorithms below are written once for f32 and f64.
cusolverStatus_t potrf_buffer(cusolverDnHandle_t h, cublasFillMode_t u, int n, float* a, int* lw) {
  return cusolverDnSpotrf_bufferSize(h, u, n, a, n, lw);
}
cusolverStatus_t potrf_buffer(cusolverDnHandle_t h, cublasFillMode_t u, int n, double* a, int* lw) {
  return cusolverDnDpotrf_bufferSize(h, u, n, a, n, lw);
}
cusolverStatus_t potrf(cusolverDnHandle_t h, cublasFillMode_t u, int n, float* a, float* w, int lw, int* info) {
  return cusolverDnSpotrf(h, u, n, a, n, w, lw, info);
}
cusolverStatus_t potrf(cusolverDnHandle_t h, cublasFillMode_t u, int n, double* a, double* w, int lw, int* info) {
  return cusolverDnDpotrf(h, u, n, a, n, w, lw, info);
}
cusolverStatus_t potri_buffer(cusolverDnHandle_t h, cublasFillMode_t u, int n, float* a, int* lw) {
  return cusolverDnSpotri_bufferSize(h, u, n, a, n, lw);
}
cusolverStatus_t potri_buffer(cusolverDnHandle_t h, cublasFillMode_t u, int n, double* a, int* lw) {
  return cusolverDnDpotri_bufferSize(h, u, n, a, n, lw);
}
cusolverStatus_t potri(cusolverDnHandle_t h, cublasFillMode_t u, int n, float* a, float* w, int lw, int* info) {
  return cusolverDnSpotri(h, u, n, a, n, w, lw, info);
}
cusolverStatus_t potri(cusolverDnHandle_t h, cublasFillMode_t u, int n, double* a, double* w, int lw, int* info) {
  return cusolverDnDpotri(h, u, n, a, n, w, lw, info);
}
cublasStatus_t trsm(cublasHandle_t h, cublasSideMode_t side, cublasFillMode_t u, cublasOperation_t op, int m, int n,
                    const float* a, int lda, float* b, int ldb) {
  const float one = 1.0f;
  return cublasStrsm(h, side, u, op, CUBLAS_DIAG_NON_UNIT, m, n, &one, a, lda, b, ldb);
}
cublasStatus_t trsm(cublasHandle_t h, cublasSideMode_t side, cublasFillMode_t u, cublasOperation_t op, int m, int n,
                    const double* a, int lda, double* b, int ldb) {
  const double one = 1.0;
  return cublasDtrsm(h, side, u, op, CUBLAS_DIAG_NON_UNIT, m, n, &one, a, lda, b, ldb);
}

template <class T>
Tensor cholesky_typed(const Tensor& a, bool upper) {
  const int n = int(a.size(0));
  Tensor f = a.clone();  // contiguous copy, factored in place
  cusolverDnHandle_t h = pt::cuda::cusolver_handle();
  int lwork = 0;
  PT_CUSOLVER_CHECK(potrf_buffer(h, flipped_fill(upper), n, f.data<T>(), &lwork));
  Tensor work = Tensor::empty({lwork > 0 ? lwork : 1}, a.dtype(), Device::cuda);
  Tensor info = Tensor::empty({1}, DType::i32, Device::cuda);
  PT_CUSOLVER_CHECK(potrf(h, flipped_fill(upper), n, f.data<T>(), work.data<T>(), lwork, info.data<int32_t>()));
  const int minor = read_info(info);
  PT_CHECK(minor >= 0, "cholesky: cuSOLVER potrf rejected argument ", -minor, " for ", a.describe());
  if (minor > 0)
    throw NotPositiveDefinite(detail::concat("cholesky: matrix ", a.describe(),
                                             " is not positive definite (leading minor of order ", minor,
                                             " is not positive); add damping or more samples"),
                              minor);
  launch_triangle(true, f.data<T>(), n, !upper);
  return f;
}

template <class T>
Tensor cholesky_inverse_typed(const Tensor& factor, bool upper) {
  const int n = int(factor.size(0));
  Tensor inv = factor.clone();
  cusolverDnHandle_t h = pt::cuda::cusolver_handle();
  int lwork = 0;
  PT_CUSOLVER_CHECK(potri_buffer(h, flipped_fill(upper), n, inv.data<T>(), &lwork));
  Tensor work = Tensor::empty({lwork > 0 ? lwork : 1}, factor.dtype(), Device::cuda);
  Tensor info = Tensor::empty({1}, DType::i32, Device::cuda);
  PT_CUSOLVER_CHECK(potri(h, flipped_fill(upper), n, inv.data<T>(), work.data<T>(), lwork, info.data<int32_t>()));
  const int status = read_info(info);
  PT_CHECK(status >= 0, "cholesky_inverse: cuSOLVER potri rejected argument ", -status, " for ", factor.describe());
  PT_CHECK(status == 0, "cholesky_inverse: factor ", factor.describe(), " has a zero on its diagonal (entry ",
           status, "), so the matrix is singular; factor a damped matrix instead");
  // potri wrote the factor's triangle (row-major lower for a lower factor); mirror it.
  launch_triangle(false, inv.data<T>(), n, !upper);
  return inv;
}

template <class T>
Tensor triangular_solve_typed(const Tensor& a, const Tensor& b, bool upper, bool left, bool transpose) {
  Tensor ac = a.contiguous();
  Tensor x = b.clone();  // solved in place
  const int rows = int(x.size(0)), cols = int(x.size(1));
  // Column-major view of row-major X is Xᵀ: cols x rows with leading dimension cols.
  PT_CUBLAS_CHECK(trsm(pt::cuda::cublas_handle(), left ? CUBLAS_SIDE_RIGHT : CUBLAS_SIDE_LEFT, flipped_fill(upper),
                       transpose ? CUBLAS_OP_T : CUBLAS_OP_N, cols, rows, ac.data<T>(), int(ac.size(0)), x.data<T>(),
                       cols));
  return x;
}

}  // namespace

Tensor cholesky(const Tensor& a, bool upper) {
  return a.dtype() == DType::f64 ? cholesky_typed<double>(a, upper) : cholesky_typed<float>(a, upper);
}

Tensor cholesky_inverse(const Tensor& factor, bool upper) {
  return factor.dtype() == DType::f64 ? cholesky_inverse_typed<double>(factor, upper)
                                      : cholesky_inverse_typed<float>(factor, upper);
}

Tensor triangular_solve(const Tensor& a, const Tensor& b, bool upper, bool left, bool transpose) {
  return a.dtype() == DType::f64 ? triangular_solve_typed<double>(a, b, upper, left, transpose)
                                 : triangular_solve_typed<float>(a, b, upper, left, transpose);
}

}  // namespace pt::cuda_ops
