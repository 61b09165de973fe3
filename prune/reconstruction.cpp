// Layer-output reconstruction error from the Hessian: Σ_rows dw·H·dwᵀ / 2, in f64.
#include "prune/reconstruction.h"

#include <algorithm>

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
  // dw (exact in f64: the difference of two f32 values) is made a block of rows at a time, and H is widened to f64
  // a block of its columns at a time: an ffn-wide H in f64 would be twice the largest matrix of the pass.
  const int64_t rows = w_old.size(0), cols = w_old.size(1), block = 256;
  const Tensor dw = Tensor::empty({rows, cols}, DType::f64, w_old.device());
  for (int64_t r = 0; r < rows; r += block) {
    const int64_t n = std::min(block, rows - r);
    dw.narrow(0, r, n).copy_(sub(w_new.narrow(0, r, n).to(DType::f64), w_old.narrow(0, r, n).to(DType::f64)));
  }
  double total = 0;
  for (int64_t c = 0; c < cols; c += block) {
    const int64_t n = std::min(block, cols - c);
    const Tensor dwH = matmul(dw, H.narrow(1, c, n).to(DType::f64));  // columns c..c+n of dw·H
    total += sum_all(mul(dwH, dw.narrow(1, c, n))).item();
  }
  return total / 2.0;
}

}  // namespace pt::prune
