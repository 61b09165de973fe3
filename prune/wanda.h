// Wanda (locuslab/wanda): score |W_ij| * ||X_j||, compared within each output row.
#pragma once
#include <cstdint>

#include "prune/exact_sum.h"
#include "prune/mask.h"

namespace pt::prune {

// locuslab/wanda's WrappedGPT.scaler_row: a running mean over samples of the squared L2 norm of each input
// feature, in f32: scaler_row *= n/(n+b); n += b; scaler_row += ||X_j||^2 / n (X: all tokens of the batch).
// With use_exact_sum() ([prune] statistics_sum = exact) the same mean from the exact sum (prune/exact_sum.h) of
// every sequence's norms (each in double): the same bits for any batches, order, ranks and threads.
struct WandaStats {
  Tensor scaler_row;     // f32 [cols]; undefined until the first batch (or made by the constructor)
  int64_t nsamples = 0;  // counted in sequences, like the reference
  ExactSum exact;        // [1, cols] in exact mode (undefined otherwise); scaler_row = exact / nsamples after each batch

  WandaStats() = default;
  WandaStats(int64_t cols, Device device);
  // Sum exactly (on a constructed WandaStats, before the first batch).
  void use_exact_sum();
  // x [..., cols] (f32, or f16/bf16 converted to f32): all tokens of `sequences` sequences (>= 1).
  void add_batch(const Tensor& x, int64_t sequences);
  // Exact mode: scaler_row from the sum and nsamples (after the sum changed, e.g. summed across ranks).
  void refresh_from_exact_sum();
};

// |W| * sqrt(scaler_row) broadcast over rows: f32 [rows, cols] on the weight's device.
Tensor wanda_scores(const Tensor& weight, const WandaStats& stats);
// Per-row groups (MaskGroup::row); N:M groups inside each row.
Tensor wanda_mask(const Tensor& weight, const WandaStats& stats, const SparsityPattern& pattern,
                  const Tensor& prev_keep = {}, const std::string& variant = "");

}  // namespace pt::prune
