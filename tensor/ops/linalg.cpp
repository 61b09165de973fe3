// Dense linear algebra on square f32/f64 matrices: LAPACKE / CBLAS on the CPU, cuSOLVER / cuBLAS on
// CUDA (linalg.cu). Every result is a fresh contiguous row-major matrix; factors have the unused
// triangle set to exactly zero and inverses are written in full (both triangles).
#include <cblas.h>
#include <lapacke.h>

#include <climits>
#include <utility>

#include "tensor/ops.h"
#include "tensor/ops/checks.h"
#include "tensor/ops/cuda_ops.h"

namespace pt {
namespace {

void check_square(const char* op, const Tensor& a, const char* arg) {
  checks::defined(op, a, arg);
  checks::dtype_in(op, a, {DType::f32, DType::f64});
  checks::rank(op, a, 2, arg);
  PT_CHECK(a.size(0) == a.size(1), op, ": ", arg, " must be a square matrix, got ", a.describe());
  PT_CHECK(a.size(0) <= INT_MAX, op, ": ", a.describe(), " is too large for 32-bit LAPACK");
}

// Sets the triangle strictly above (keep_lower) or below the diagonal to zero.
template <class T>
void zero_triangle(T* p, int64_t n, bool keep_lower) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < n; ++c)
      if (keep_lower ? c > r : c < r) p[r * n + c] = T(0);
}

// Copies the lower (from_lower) or upper triangle onto the other one; ld is the row stride.
template <class T>
void mirror_triangle(T* p, int64_t n, int64_t ld, bool from_lower) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = r + 1; c < n; ++c) {
      if (from_lower) p[r * ld + c] = p[c * ld + r];
      else p[c * ld + r] = p[r * ld + c];
    }
}

// LAPACKE's row-major entry points transpose the matrix into a temporary n×n copy (malloc'd, outside the tensor
// allocator: on an ffn-wide Hessian as large as the matrix itself, and the largest transient of a pruning pass).
// The column-major routine on the matrix with its triangles swapped in place sees exactly the values that copy
// would hold, so the result is the same to the bit, without the copy.
template <class T>
void swap_triangles(T* p, int64_t n) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = r + 1; c < n; ++c) std::swap(p[r * n + c], p[c * n + r]);
}
template <class T, class Routine>
lapack_int row_major_in_place(T* a, lapack_int n, Routine routine) {
  swap_triangles(a, n);
  const lapack_int info = routine(a);
  swap_triangles(a, n);
  return info;
}
lapack_int potrf(char uplo, lapack_int n, float* a) {
  return row_major_in_place(a, n, [&](float* m) { return LAPACKE_spotrf(LAPACK_COL_MAJOR, uplo, n, m, n); });
}
lapack_int potrf(char uplo, lapack_int n, double* a) {
  return row_major_in_place(a, n, [&](double* m) { return LAPACKE_dpotrf(LAPACK_COL_MAJOR, uplo, n, m, n); });
}
lapack_int potri(char uplo, lapack_int n, float* a) {
  return row_major_in_place(a, n, [&](float* m) { return LAPACKE_spotri(LAPACK_COL_MAJOR, uplo, n, m, n); });
}
lapack_int potri(char uplo, lapack_int n, double* a) {
  return row_major_in_place(a, n, [&](double* m) { return LAPACKE_dpotri(LAPACK_COL_MAJOR, uplo, n, m, n); });
}

template <class T>
void cpu_cholesky(const Tensor& a, const Tensor& f, bool upper) {
  const int64_t n = f.size(0);
  const lapack_int info = potrf(upper ? 'U' : 'L', lapack_int(n), f.data<T>());
  // LAPACKE checks the input for NaN first and reports it as a bad argument 4 (the matrix).
  PT_CHECK(info != -4, "cholesky: matrix ", a.describe(), " contains NaN; check the data it was built from");
  PT_CHECK(info >= 0, "cholesky: LAPACK potrf rejected argument ", -info, " for ", a.describe());
  if (info > 0)
    throw NotPositiveDefinite(detail::concat("cholesky: matrix ", a.describe(),
                                             " is not positive definite (leading minor of order ", info,
                                             " is not positive); add damping or more samples"),
                              info);
  zero_triangle(f.data<T>(), n, !upper);
}

template <class T>
void cpu_cholesky_inverse(const Tensor& factor, const Tensor& inv, bool upper) {
  const int64_t n = inv.size(0);
  const lapack_int info = potri(upper ? 'U' : 'L', lapack_int(n), inv.data<T>());
  PT_CHECK(info != -4, "cholesky_inverse: factor ", factor.describe(), " contains NaN");
  PT_CHECK(info >= 0, "cholesky_inverse: LAPACK potri rejected argument ", -info, " for ", factor.describe());
  PT_CHECK(info == 0, "cholesky_inverse: factor ", factor.describe(), " has a zero on its diagonal (entry ", info,
           "), so the matrix is singular; factor a damped matrix instead");
  mirror_triangle(inv.data<T>(), n, n, !upper);  // potri fills only the factor's triangle
}

void blas_trsm(CBLAS_SIDE side, CBLAS_UPLO uplo, CBLAS_TRANSPOSE tr, int m, int n, const float* a, int lda, float* b,
               int ldb) {
  cblas_strsm(CblasRowMajor, side, uplo, tr, CblasNonUnit, m, n, 1.0f, a, lda, b, ldb);
}
void blas_trsm(CBLAS_SIDE side, CBLAS_UPLO uplo, CBLAS_TRANSPOSE tr, int m, int n, const double* a, int lda,
               double* b, int ldb) {
  cblas_dtrsm(CblasRowMajor, side, uplo, tr, CblasNonUnit, m, n, 1.0, a, lda, b, ldb);
}

template <class T>
void cpu_triangular_solve(const Tensor& a, const Tensor& x, bool upper, bool left, bool transpose) {
  blas_trsm(left ? CblasLeft : CblasRight, upper ? CblasUpper : CblasLower, transpose ? CblasTrans : CblasNoTrans,
            int(x.size(0)), int(x.size(1)), a.data<T>(), int(a.size(0)), x.data<T>(), int(x.size(1)));
}

}  // namespace

Tensor cholesky(const Tensor& a, bool upper) {
  check_square("cholesky", a, "a");
  if (a.numel() == 0) return Tensor::empty(a.shape(), a.dtype(), a.device());
  PT_DISPATCH_CUDA(a, return cuda_ops::cholesky(a, upper))
  Tensor f = a.clone();  // LAPACK factors in place
  if (a.dtype() == DType::f32) cpu_cholesky<float>(a, f, upper);
  else cpu_cholesky<double>(a, f, upper);
  return f;
}

Tensor cholesky_inverse(const Tensor& factor, bool upper) {
  check_square("cholesky_inverse", factor, "factor");
  if (factor.numel() == 0) return Tensor::empty(factor.shape(), factor.dtype(), factor.device());
  PT_DISPATCH_CUDA(factor, return cuda_ops::cholesky_inverse(factor, upper))
  Tensor inv = factor.clone();
  if (factor.dtype() == DType::f32) cpu_cholesky_inverse<float>(factor, inv, upper);
  else cpu_cholesky_inverse<double>(factor, inv, upper);
  return inv;
}

Tensor triangular_solve(const Tensor& a, const Tensor& b, bool upper, bool left, bool transpose) {
  check_square("triangular_solve", a, "a");
  checks::defined("triangular_solve", b, "b");
  checks::same_device("triangular_solve", {&a, &b});
  checks::same_dtype("triangular_solve", a, b);
  checks::rank("triangular_solve", b, 2, "b");
  const int64_t n = a.size(0);
  PT_CHECK((left ? b.size(0) : b.size(1)) == n, "triangular_solve: a ", a.describe(), " does not fit b ",
           b.describe(), left ? " (left solve needs b.size(0) == n)" : " (right solve needs b.size(1) == n)");
  PT_CHECK(b.size(0) <= INT_MAX && b.size(1) <= INT_MAX, "triangular_solve: ", b.describe(), " is too large for BLAS");
  if (b.numel() == 0) return Tensor::empty(b.shape(), b.dtype(), b.device());
  PT_DISPATCH_CUDA(a, return cuda_ops::triangular_solve(a, b, upper, left, transpose))
  Tensor ac = a.contiguous();
  Tensor x = b.clone();  // BLAS solves in place
  if (a.dtype() == DType::f32) cpu_triangular_solve<float>(ac, x, upper, left, transpose);
  else cpu_triangular_solve<double>(ac, x, upper, left, transpose);
  return x;
}

void symmetrize_(const Tensor& a, bool from_upper) {
  check_square("symmetrize_", a, "a");
  PT_CHECK(a.stride(1) == 1 || a.size(0) <= 1, "symmetrize_: a ", a.describe(), " needs unit column stride");
  if (a.numel() == 0) return;
  PT_DISPATCH_CUDA(a, cuda_ops::mirror_triangle(a, /*to_lower=*/from_upper); return)
  if (a.dtype() == DType::f32) mirror_triangle(a.data<float>(), a.size(0), a.stride(0), !from_upper);
  else mirror_triangle(a.data<double>(), a.size(0), a.stride(0), !from_upper);
}

}  // namespace pt
