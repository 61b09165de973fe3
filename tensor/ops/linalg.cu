// cuSOLVER / cuBLAS side of the dense linear algebra. All matrices here are row-major; cuSOLVER and
// cuBLAS are column-major, and a row-major matrix read column-major is its transpose. So a row-major
// lower factor L (A = L·Lᵀ) is the column-major upper factor U = Lᵀ (A = Uᵀ·U, A symmetric): every
// fill mode flips. For trsm, op(A)·X = B in row-major is Xᵀ·op(A)ᵀ = Bᵀ in column-major: the side and
// fill mode flip, the transpose flag stays.
#include <vector>

#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/cuda_context.h"
#include "tensor/cuda/launch.h"
#include "tensor/cuda/mirror_tiles.h"
#include "tensor/ops/cuda_ops.h"

namespace pt::cuda_ops {
namespace {

using pt::cuda::grid_for;
using pt::cuda::kMirrorRows;
using pt::cuda::kMirrorTile;
using pt::cuda::kThreads;

cublasFillMode_t flipped_fill(bool upper) { return upper ? CUBLAS_FILL_MODE_LOWER : CUBLAS_FILL_MODE_UPPER; }

template <class T> cudaDataType solver_dtype();
template <> cudaDataType solver_dtype<float>() { return CUDA_R_32F; }
template <> cudaDataType solver_dtype<double>() { return CUDA_R_64F; }

// Row-major n x n: zero the strict upper triangle (keep_lower) or the strict lower one.
template <class T>
__global__ void zero_triangle(T* a, int64_t n, bool keep_lower) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n * n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / n, c = i % n;
    if (keep_lower ? c > r : c < r) a[i] = T(0);
  }
}

// Row-major n x n (row stride ld): the other triangle from the written one, one tile per block (mirror_tiles.h).
template <class T>
__global__ void __launch_bounds__(kMirrorTile * kMirrorRows)
    mirror_triangle_kernel(T* a, int64_t n, int64_t ld, bool to_lower) {
  __shared__ T tile[kMirrorTile][kMirrorTile + 1];  // +1: the transposed reads hit 32 different banks
  const pt::cuda::MirrorTile t = pt::cuda::mirror_tile(blockIdx.x, blockIdx.y, to_lower);
  if (!t.active) return;  // uniform per block
  pt::cuda::mirror_load(a, n, ld, t, int(threadIdx.x), int(threadIdx.y), tile);
  __syncthreads();
  pt::cuda::mirror_store(a, n, ld, t, int(threadIdx.x), int(threadIdx.y), to_lower, tile);
}

template <class T>
void launch_zero_triangle(T* a, int64_t n, bool keep_lower) {
  zero_triangle<<<grid_for(n * n), kThreads, 0, pt::cuda::current_stream()>>>(a, n, keep_lower);
  PT_CUDA_CHECK_LAUNCH();
}

template <class T>
void launch_mirror(T* a, int64_t n, int64_t ld, bool to_lower) {
  const unsigned tiles = pt::cuda::mirror_tiles(n);
  PT_CHECK(tiles <= 65535, "mirror_triangle (cuda): ", n, "x", n, " needs more than 65535 tiles per grid column");
  mirror_triangle_kernel<<<dim3(tiles, tiles), dim3(kMirrorTile, kMirrorRows), 0, pt::cuda::current_stream()>>>(
      a, n, ld, to_lower);
  PT_CUDA_CHECK_LAUNCH();
}

// cuSOLVER's status word (info) copied back to the host; this synchronises the stream.
int read_info(const Tensor& info) {
  int host = 0;
  PT_CUDA_CHECK(cudaMemcpyAsync(&host, info.data_ptr(), sizeof(int), cudaMemcpyDeviceToHost,
                                pt::cuda::current_stream()));
  pt::cuda::synchronize();
  return host;
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

// Factorisations and solves use cuSOLVER's 64-bit API (cusolverDnX*), one code path at every size: the 32-bit
// cusolverDn?potrf/potri index the matrix with 32-bit integers, which overflow once n² passes 2^31 (n above
// 46,340; OPT-175B's fc2 input is 49,152).
template <class T>
Tensor cholesky_typed(const Tensor& a, bool upper) {
  const int64_t n = a.size(0);
  Tensor f = a.clone();  // contiguous copy, factored in place
  cusolverDnHandle_t h = pt::cuda::cusolver_handle();
  cusolverDnParams_t params = pt::cuda::cusolver_params();
  const cudaDataType dt = solver_dtype<T>();
  size_t device_bytes = 0, host_bytes = 0;
  PT_CUSOLVER_CHECK(cusolverDnXpotrf_bufferSize(h, params, flipped_fill(upper), n, dt, f.data_ptr(), n, dt,
                                                &device_bytes, &host_bytes));
  Tensor work = Tensor::empty({int64_t(device_bytes > 0 ? device_bytes : 1)}, DType::u8, Device::cuda);
  std::vector<char> host_work(host_bytes > 0 ? host_bytes : 1);
  Tensor info = Tensor::empty({1}, DType::i32, Device::cuda);
  PT_CUSOLVER_CHECK(cusolverDnXpotrf(h, params, flipped_fill(upper), n, dt, f.data_ptr(), n, dt, work.data_ptr(),
                                     device_bytes, host_work.data(), host_bytes, info.data<int32_t>()));
  const int minor = read_info(info);
  PT_CHECK(minor >= 0, "cholesky: cuSOLVER Xpotrf rejected argument ", -minor, " for ", a.describe());
  if (minor > 0)
    throw NotPositiveDefinite(detail::concat("cholesky: matrix ", a.describe(),
                                             " is not positive definite (leading minor of order ", minor,
                                             " is not positive); add damping or more samples"),
                              minor);
  launch_zero_triangle(f.data<T>(), n, !upper);
  return f;
}

// A⁻¹ from its factor: Xpotrs solves A·X = I (both triangular solves: 2n³ flops against potri's 2n³/3, but the
// 64-bit API has no potri), then the factor's triangle is mirrored so the result is exactly symmetric like the
// CPU's. Xpotrs does not detect a singular factor, so its diagonal is read back and checked (n values, in the
// synchronisation that reads the status word anyway).
template <class T>
Tensor cholesky_inverse_typed(const Tensor& factor, bool upper) {
  const int64_t n = factor.size(0);
  const Tensor f = factor.contiguous();
  Tensor inv = Tensor::eye(n, factor.dtype(), Device::cuda);  // the right-hand sides, solved in place
  Tensor info = Tensor::empty({1}, DType::i32, Device::cuda);
  const cudaDataType dt = solver_dtype<T>();
  PT_CUSOLVER_CHECK(cusolverDnXpotrs(pt::cuda::cusolver_handle(), pt::cuda::cusolver_params(), flipped_fill(upper), n,
                                     n, dt, f.data_ptr(), n, dt, inv.data_ptr(), n, info.data<int32_t>()));
  const std::vector<double> diagonal = f.as_strided({n}, {n + 1}, f.offset()).to(Device::cpu).to_vector<double>();
  const int status = read_info(info);
  PT_CHECK(status == 0, "cholesky_inverse: cuSOLVER Xpotrs rejected argument ", -status, " for ", factor.describe());
  for (int64_t i = 0; i < n; ++i)
    PT_CHECK(diagonal[size_t(i)] != 0.0, "cholesky_inverse: factor ", factor.describe(), " has a zero on its diagonal ",
             "(entry ", i + 1, "), so the matrix is singular; factor a damped matrix instead");
  // Column-major X = A⁻¹ equals its transpose up to rounding: copy the factor's triangle (row-major) over the other.
  launch_mirror(inv.data<T>(), n, n, /*to_lower=*/upper);
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

void mirror_triangle(const Tensor& a, bool to_lower) {
  if (a.dtype() == DType::f64) launch_mirror(a.data<double>(), a.size(0), a.stride(0), to_lower);
  else launch_mirror(a.data<float>(), a.size(0), a.stride(0), to_lower);
}

}  // namespace pt::cuda_ops
