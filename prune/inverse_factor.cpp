// The variants of the inverse_factor family (prune/sparsegpt.h): U, the upper Cholesky factor of A⁻¹.
#include <cmath>
#include <vector>

#include "prune/sparsegpt.h"
#include "tensor/ops.h"

namespace pt::prune::detail {

namespace {

// In-place lower Cholesky factor of the row-major n×n matrix a (upper triangle left as it was).
void cholesky_lower(std::vector<double>& a, int64_t n, const char* what) {
  for (int64_t j = 0; j < n; ++j) {
    double d = a[size_t(j * n + j)];
    for (int64_t k = 0; k < j; ++k) d -= a[size_t(j * n + k)] * a[size_t(j * n + k)];
    if (!(d > 0.0))
      throw NotPositiveDefinite(pt::detail::concat("inverse_factor (reference): ", what, " ", n, "x", n,
                                                   " is not positive definite (leading minor ", j + 1, ")"),
                                j + 1);
    const double l = std::sqrt(d);
    a[size_t(j * n + j)] = l;
    for (int64_t i = j + 1; i < n; ++i) {
      double s = a[size_t(i * n + j)];
      for (int64_t k = 0; k < j; ++k) s -= a[size_t(i * n + k)] * a[size_t(j * n + k)];
      a[size_t(i * n + j)] = s / l;
    }
  }
}

// Plain double loops: A = L·Lᵀ; A⁻¹ = L⁻ᵀ·L⁻¹; then A⁻¹ = Uᵀ·U, i.e. U = (the lower factor of A⁻¹)ᵀ.
Tensor inverse_factor_reference(const Tensor& A, const Tensor& diagonal) {
  const int64_t n = A.size(0);
  std::vector<double> a = with_diagonal(A, diagonal).to(DType::f64).contiguous().to_vector<double>();
  cholesky_lower(a, n, "A");
  std::vector<double> linv(size_t(n * n), 0.0);  // L⁻¹, lower, by forward substitution column by column
  for (int64_t c = 0; c < n; ++c) {
    linv[size_t(c * n + c)] = 1.0 / a[size_t(c * n + c)];
    for (int64_t i = c + 1; i < n; ++i) {
      double s = 0.0;
      for (int64_t k = c; k < i; ++k) s += a[size_t(i * n + k)] * linv[size_t(k * n + c)];
      linv[size_t(i * n + c)] = -s / a[size_t(i * n + i)];
    }
  }
  std::vector<double> inv(size_t(n * n), 0.0);  // (L⁻¹)ᵀ·L⁻¹
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (int64_t k = std::max(i, j); k < n; ++k) s += linv[size_t(k * n + i)] * linv[size_t(k * n + j)];
      inv[size_t(i * n + j)] = s;
    }
  cholesky_lower(inv, n, "A⁻¹");
  std::vector<float> u(size_t(n * n), 0.0f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) u[size_t(i * n + j)] = float(inv[size_t(j * n + i)]);
  return Tensor::from_vector(u, {n, n}).to(A.device());
}

}  // namespace

kernels::Family<InverseFactorFn>::Variant inverse_factor_reference_variant() {
  return {{.name = "reference",
           .devices = {Device::cpu},
           .dtypes = {DType::f32},
           .summary = "Cholesky, triangular inverse, product and Cholesky again, in double loops"},
          inverse_factor_reference};
}

kernels::Family<InverseFactorFn>::Variant inverse_factor_chol_inv_chol_variant() {
  return {{.name = "chol_inv_chol",
           .devices = {Device::cpu, Device::cuda},
           .dtypes = {DType::f32},
           .summary = "cholesky -> cholesky_inverse -> cholesky(upper): LAPACK, or cuSOLVER and cuBLAS"},
          [](const Tensor& A, const Tensor& diagonal) {
            // Each intermediate is dropped as soon as the next exists (the damped copy with the first
            // factorisation): at most two d×d matrices beside A.
            Tensor L = cholesky(with_diagonal(A, diagonal));
            Tensor Hinv = cholesky_inverse(L);
            L = Tensor();
            return cholesky(Hinv, /*upper=*/true);
          }};
}

}  // namespace pt::prune::detail
