// Layer-output reconstruction error from the Hessian: Σ_rows dw·H·dwᵀ / 2, in f64.
#include "prune/reconstruction.h"

#include "prune/pattern.h"
#include "tensor/ops.h"

namespace pt::prune {

double reconstruction_error(const Tensor& w_old, const Tensor& w_new, const Tensor& H) {
  check_weight_matrix("reconstruction_error", w_old, "w_old");
  check_weight_matrix("reconstruction_error", w_new, "w_new");
  PT_CHECK(w_old.shape() == w_new.shape() && w_old.device() == w_new.device(), "reconstruction_error: w_old ",
           w_old.describe(), " and w_new ", w_new.describe(), " differ in shape or device");
  PT_CHECK(H.defined() && H.dim() == 2 && H.size(0) == w_old.size(1) && H.size(1) == w_old.size(1) &&
               H.device() == w_old.device(),
           "reconstruction_error: H ", H.defined() ? H.describe() : std::string("undefined"), " should be [",
           w_old.size(1), ", ", w_old.size(1), "] on the weights' device");
  const Tensor dw = sub(w_new.to(DType::f64), w_old.to(DType::f64));
  const Tensor dwH = matmul(dw, H.to(DType::f64));
  return sum_all(mul(dwH, dw)).item() / 2.0;
}

}  // namespace pt::prune
