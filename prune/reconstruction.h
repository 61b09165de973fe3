// How much a pruned layer's output moves, measured from its Hessian alone (no activations needed).
#pragma once
#include "tensor/tensor.h"

namespace pt::prune {

// With H = (2/n) Σ x xᵀ over the calibration tokens and dW = w_new - w_old (f32 [rows, cols], H [cols, cols],
// one device): Σ over rows of dw·H·dwᵀ / 2  =  (1/n) Σ_tokens ||dW x||², the mean squared output change per
// sequence. Computed in f64; comparable between methods on the same H.
double reconstruction_error(const Tensor& w_old, const Tensor& w_new, const Tensor& H);

}  // namespace pt::prune
