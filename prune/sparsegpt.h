// SparseGPT (Frantar & Alistarh 2023): prune one weight matrix given its layer Hessian, updating the
// remaining weights column by column to compensate (IST-DASLab/sparsegpt's fasterprune), with exact counts and
// mask persistence (previously pruned weights stay pruned: the iterative schedule of Prune and Tune, A.1.1).
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "prune/pattern.h"
#include "tensor/kernel_registry.h"
#include "tensor/tensor.h"

namespace pt::prune {

struct SparseGptOptions {
  int64_t blocksize = 128;
  double percdamp = 0.01;       // relative damping: H += percdamp*mean(diag H)*I
  int max_damping_retries = 4;  // on NotPositiveDefinite: percdamp *= 10 and retry (logged); then a pt::Error
  std::function<void(const std::string&)> log;  // optional; retries are reported here (else stderr)
  // The inverse factor with one CPU thread (prune/one_thread_scope.h): the same bits for any thread count.
  bool serial_factorisation = false;
};

struct SparseGptResult {
  Tensor keep;             // u8 [rows, cols], on the weight's device
  double obs_loss = 0;     // Σ over columns of (w-q)²/U_ii²/2 (the reference's Losses.sum())
  double percdamp_used = 0;
  int retries = 0;
  int64_t dead_columns = 0;  // columns with diag(H) == 0 (no calibration signal): zeroed
};

// Prunes `weight` (f32 [rows, cols], CPU or CUDA) IN PLACE to `pattern`. H: f32 [cols, cols] on the same device,
// not modified. prev_keep: u8 [rows, cols] or undefined; its zeros are forced (and count toward the target).
// Unstructured: exactly pruned_count(rows*cols, s) pruned, spread over the column blocks by
// sparsegpt_block_prune_count. On return the keep mask's zeros are exact zeros in weight.
SparseGptResult sparsegpt_prune(Tensor& weight, const Tensor& H, const SparsityPattern& pattern,
                                const Tensor& prev_keep = {}, const SparseGptOptions& options = {});

// ---- the pieces, public for the benchmark and tests --------------------------------------------------------

// The kernel family inverse_factor (prune/kernel_families.cpp registers its variants): U, the upper Cholesky
// factor of Â⁻¹, where Â is the symmetric A (f32 [d, d], not modified) with its diagonal replaced by `diagonal`
// (f32 [d]: SparseGPT's damped diagonal), as a new f32 [d, d] tensor whose strict lower triangle is 0; a matrix that
// is not positive definite raises pt::NotPositiveDefinite. Â is the variant's own copy and dies with the first
// factorisation: on an ffn-wide Hessian every d×d copy is among the largest tensors of a pruning pass (a streamed
// pass is bounded by them), so the caller keeps no damped copy of its own.
//   reference      Cholesky, inverse and Cholesky again in double loops (CPU)
//   chol_inv_chol  cholesky -> cholesky_inverse -> cholesky(upper): LAPACK on the CPU, cuSOLVER/cuBLAS on CUDA
using InverseFactorFn = Tensor(const Tensor& A, const Tensor& diagonal);
kernels::Family<InverseFactorFn>& inverse_factor_family();
// A copy of A with its diagonal replaced by `diagonal`: the first step of every variant.
Tensor with_diagonal(const Tensor& A, const Tensor& diagonal);

// U for H + damp·I, damp = percdamp·mean(diag H), where the diagonal of the columns marked in `dead` (u8 [d], or
// undefined: none) counts as 1 (SparseGPT's dead inputs, diag H = 0; H itself is not copied); on NotPositiveDefinite
// the damping is retried with percdamp *10, up to max_retries times (each retry logged), then a pt::Error naming
// the size, the last percdamp and what to try. `variant` names an inverse_factor_family() variant ("" = its
// selection).
struct InverseFactor {
  Tensor U;
  double percdamp_used = 0;
  int retries = 0;
};
InverseFactor damped_inverse_factor(const Tensor& H, double percdamp, int max_retries,
                                    const std::function<void(const std::string&)>& log = {},
                                    const std::string& variant = "", const Tensor& dead = {});

// How many weights block j prunes so the matrix total is exact and every prefix of blocks is as close to the
// target as the forced positions allow: clamp(C_j - S, P_j, T - S - P_after) where C_j = pruned_count(cum_numel,
// s) for the columns up to the block's end, S = pruned in earlier blocks, P_j = forced in this block, P_after =
// forced in later blocks, T = pruned_count(rows*cols, s).
int64_t sparsegpt_block_prune_count(int64_t cum_numel, double sparsity, int64_t total, int64_t pruned_before,
                                    int64_t forced_here, int64_t forced_after);

}  // namespace pt::prune
