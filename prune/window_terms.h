// One calibration window's terms of the exact statistics sum (prune/exact_sum.h), computed the same way whatever
// the batch the window came in, the rank and the thread count: each window alone, its Gram matrix a block of
// kGramBlock columns at a time (a [cols, kGramBlock] temporary, not [cols, cols]), each block one GEMM of fixed
// shape (K = the window's tokens), whose every entry is one dot product over the tokens in a fixed order.
#pragma once
#include <cstdint>

#include "prune/exact_sum.h"

namespace pt::prune::detail {

inline constexpr int64_t kGramBlock = 256;

// Adds XᵀX of x (f32 [tokens, cols], contiguous, any device) to `sum` ([cols, cols]) as one term: the upper
// triangle and the diagonal blocks (the strict lower triangle outside them is left as it is). Bound: the largest
// column sum of squares, in double.
void add_window_gram(ExactSum& sum, const Tensor& x);
// Adds sum_t x_tj² (in double, tokens in order) of x (f32 [tokens, cols]) to `sum` ([1, cols]) as one term.
void add_window_square_norms(ExactSum& sum, const Tensor& x);

}  // namespace pt::prune::detail
