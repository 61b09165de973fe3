// SparseGPT's fasterprune for one matrix, on any device: dead columns, damped inverse Cholesky factor, then
// blocks of columns (mask, in-block OBS sweep, deferred update of the columns to the right).
#include "prune/sparsegpt.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <vector>

#include "prune/mask.h"
#include "prune/one_thread_scope.h"
#include "prune/obs_sweep.h"
#include "tensor/nvtx.h"
#include "tensor/ops.h"

namespace pt::prune {
namespace {

Tensor diagonal(const Tensor& square_contiguous) {
  const int64_t n = square_contiguous.size(0);
  return square_contiguous.as_strided({n}, {n + 1}, square_contiguous.offset());
}

// Pruned positions of prev_keep in each column block (one small device-to-host read).
std::vector<int64_t> forced_per_block(const Tensor& prev_keep, int64_t blocksize) {
  const int64_t rows = prev_keep.size(0), cols = prev_keep.size(1);
  const std::vector<double> kept = sum(prev_keep.to(DType::f64), 0).to_vector<double>();
  std::vector<int64_t> forced;
  for (int64_t i1 = 0; i1 < cols; i1 += blocksize) {
    double k = 0;
    for (int64_t c = i1; c < std::min(i1 + blocksize, cols); ++c) k += kept[size_t(c)];
    forced.push_back(rows * (std::min(i1 + blocksize, cols) - i1) - int64_t(k + 0.5));
  }
  return forced;
}

}  // namespace

int64_t sparsegpt_block_prune_count(int64_t cum_numel, double sparsity, int64_t total, int64_t pruned_before,
                                    int64_t forced_here, int64_t forced_after) {
  const int64_t target = pruned_count(cum_numel, sparsity) - pruned_before;
  return std::clamp(target, forced_here, total - pruned_before - forced_after);
}

Tensor with_diagonal(const Tensor& A, const Tensor& diag) {
  Tensor copy = A.clone();
  diagonal(copy).copy_(diag);
  return copy;
}

InverseFactor damped_inverse_factor(const Tensor& H, double percdamp, int max_retries,
                                    const std::function<void(const std::string&)>& log, const std::string& variant,
                                    const Tensor& dead) {
  PT_CHECK(percdamp >= 0.0 && std::isfinite(percdamp), "sparsegpt: percdamp = ", percdamp, " must be finite and >= 0");
  PT_CHECK(max_retries >= 0, "sparsegpt: max_damping_retries = ", max_retries, " must be >= 0");
  const auto& factor = inverse_factor_family().get(variant, H.device());
  PT_NVTX_RANGE("prune/cholesky");
  const Tensor diag = dead.defined() ? masked_fill(diagonal(H), dead, 1.0) : diagonal(H);
  const double mean_diag = mean_all(diag).item();
  InverseFactor out;
  for (out.retries = 0;; ++out.retries) {
    try {
      Tensor damped = diag.clone();
      unary_(damped, damped, UnaryOp::add_scalar, percdamp * mean_diag);
      out.U = factor(H, damped);
      out.percdamp_used = percdamp;
      return out;
    } catch (const NotPositiveDefinite& e) {
      PT_CHECK(out.retries < max_retries, "sparsegpt: the ", H.size(0), "x", H.size(0), " Hessian is not positive ",
               "definite even with percdamp = ", percdamp, " (mean diagonal ", mean_diag, ", ", max_retries,
               " retries; last error: ", e.what(), "). Calibrate with more samples, raise percdamp, or check the "
               "inputs for NaN/Inf");
      const std::string msg = pt::detail::concat("sparsegpt: Hessian ", H.size(0), "x", H.size(0), " not positive definite ",
                                             "with percdamp = ", percdamp, "; retrying with percdamp = ", percdamp * 10);
      if (log) log(msg);
      else std::cerr << msg << "\n";
      percdamp *= 10.0;
    }
  }
}

SparseGptResult sparsegpt_prune(Tensor& weight, const Tensor& H, const SparsityPattern& pattern,
                                const Tensor& prev_keep, const SparseGptOptions& options) {
  const char* op = "sparsegpt_prune";
  check_weight_matrix(op, weight, "weight");
  PT_CHECK(weight.is_contiguous(), op, ": weight ", weight.describe(), " must be contiguous (it is pruned in place)");
  const int64_t rows = weight.size(0), cols = weight.size(1), bs = options.blocksize;
  PT_CHECK(H.defined() && H.dtype() == DType::f32 && H.dim() == 2 && H.size(0) == cols && H.size(1) == cols &&
               H.device() == weight.device(),
           op, ": H ", H.defined() ? H.describe() : std::string("undefined"), " should be f32 [", cols, ", ", cols,
           "] on the device of the weight ", weight.describe());
  check_keep_mask(op, prev_keep, weight, "prev_keep");
  pattern.validate();
  PT_CHECK(bs >= 1, op, ": blocksize = ", bs, " must be >= 1");
  if (pattern.is_nm()) {
    PT_CHECK(cols % pattern.m == 0 && bs % pattern.m == 0, op, ": ", pattern.describe(), " needs cols (", cols,
             ") and blocksize (", bs, ") to be multiples of ", pattern.m);
    check_prev_keep_fits(op, prev_keep, pattern.n, MaskGroup::row, pattern.m);
  }
  PT_NVTX_RANGE("prune/sparsegpt");
  SparseGptResult result;
  Tensor& W = weight;

  // Dead inputs (diag H == 0) carry no signal: H_dd = 1 keeps H invertible, W[:, d] = 0.
  const Tensor dead = compare_scalar(diagonal(H), 0.0, CompareOp::eq);
  result.dead_columns = int64_t(sum_all(dead.to(DType::f64)).item() + 0.5);
  if (result.dead_columns > 0) W.copy_(masked_fill(W, dead.view({1, cols}), 0.0));
  const InverseFactor inv = [&] {
    OneThreadScope one_thread(options.serial_factorisation && H.device() == Device::cpu);
    return damped_inverse_factor(H, options.percdamp, options.max_damping_retries, options.log, "",
                                 result.dead_columns > 0 ? dead : Tensor());
  }();
  result.percdamp_used = inv.percdamp_used;
  result.retries = inv.retries;
  const Tensor& U = inv.U;  // upper Cholesky factor of H⁻¹

  // Exact counts (unstructured): the total T, and what prev_keep forces into each block.
  const int64_t total = pruned_count(rows * cols, pattern.sparsity);
  std::vector<int64_t> forced((cols + bs - 1) / bs, 0);
  if (prev_keep.defined()) forced = forced_per_block(prev_keep, bs);
  int64_t forced_after = 0;
  for (int64_t f : forced) forced_after += f;
  PT_CHECK(pattern.is_nm() || forced_after <= total, op, ": prev_keep already prunes ", forced_after, " of ",
           rows * cols, " weights, more than the ", total, " of ", pattern.describe(), " (the pruned set only grows)");

  result.keep = Tensor::empty({rows, cols}, DType::u8, W.device());
  const Tensor loss_rows = Tensor::zeros({rows}, DType::f32, W.device());
  int64_t pruned = 0;
  for (int64_t i1 = 0, j = 0; i1 < cols; i1 += bs, ++j) {
    const int64_t i2 = std::min(i1 + bs, cols), B = i2 - i1;
    const Tensor W1 = W.narrow(1, i1, B);
    const Tensor U1 = U.narrow(0, i1, B).narrow(1, i1, B).contiguous();
    const Tensor prev1 = prev_keep.defined() ? prev_keep.narrow(1, i1, B).contiguous() : Tensor();
    Tensor keep1 = Tensor::ones({rows, B}, DType::u8, W.device());
    if (!pattern.is_nm()) {  // the block's mask from the already-updated weights: lowest W1² / U_cc²
      forced_after -= forced[size_t(j)];
      const int64_t k = sparsegpt_block_prune_count(rows * i2, pattern.sparsity, total, pruned, forced[size_t(j)],
                                                    forced_after);
      const Tensor scores = div(square(W1), square(diagonal(U1)));
      keep1 = select_lowest_k(scores, k, MaskGroup::matrix, prev1);
      pruned += k;
    }
    const Tensor Err1 = Tensor::empty({rows, B}, DType::f32, W.device());
    obs_sweep_block(W1, U1, keep1, Err1, loss_rows, pattern, prev1);
    result.keep.narrow(1, i1, B).copy_(keep1);
    if (i2 < cols) {  // W[:, i2:] -= Err1 · U[i1:i2, i2:]
      PT_NVTX_RANGE("prune/obs_update");
      gemm_(W.narrow(1, i2, cols - i2), Err1, U.narrow(0, i1, B).narrow(1, i2, cols - i2), false, false, -1.0, 1.0);
    }
  }
  result.obs_loss = sum_all(loss_rows.to(DType::f64)).item();
  return result;
}

}  // namespace pt::prune
