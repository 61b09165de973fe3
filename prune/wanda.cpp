// Wanda: per-feature input norms (a running mean over sequences) and the |W|·||X_j|| score.
#include "prune/wanda.h"

#include "prune/window_terms.h"
#include "tensor/nvtx.h"
#include "tensor/ops.h"

namespace pt::prune {

WandaStats::WandaStats(int64_t cols, Device device) {
  PT_CHECK(cols > 0, "WandaStats: cols = ", cols, " must be positive");
  scaler_row = Tensor::zeros({cols}, DType::f32, device);
}

void WandaStats::add_batch(const Tensor& x, int64_t sequences) {
  PT_CHECK(x.defined() && x.dim() >= 1, "WandaStats::add_batch: x must be a tensor [..., cols], got ",
           x.defined() ? x.describe() : std::string("undefined"));
  PT_CHECK(sequences >= 1, "WandaStats::add_batch: sequences = ", sequences, " must be >= 1");
  const int64_t cols = x.size(-1);
  if (!scaler_row.defined()) scaler_row = Tensor::zeros({cols}, DType::f32, x.device());
  PT_CHECK(scaler_row.size(0) == cols && scaler_row.device() == x.device(), "WandaStats::add_batch: x ",
           x.describe(), " does not match the statistics ", scaler_row.describe());
  PT_NVTX_RANGE("prune/wanda_stats");
  if (exact.defined()) {  // each sequence alone, into the exact sum
    PT_CHECK(x.numel() % (sequences * cols) == 0, "WandaStats::add_batch: x ", x.describe(), " does not hold ",
             sequences, " sequences of equal length");
    const Tensor all = x.reshape({sequences, -1, cols});
    for (int64_t s = 0; s < sequences; ++s)
      detail::add_window_square_norms(exact, all.select(0, s).to(DType::f32).contiguous());
    nsamples += sequences;
    return refresh_from_exact_sum();
  }
  const Tensor X = x.reshape({-1, cols}).to(DType::f32);
  // scaler *= n/(n+b); n += b; scaler += ||X_j||² / n   (the reference's order of operations)
  unary_(scaler_row, scaler_row, UnaryOp::mul_scalar, double(nsamples) / double(nsamples + sequences));
  nsamples += sequences;
  Tensor norms = sum(square(X), 0);
  unary_(norms, norms, UnaryOp::mul_scalar, 1.0 / double(nsamples));
  binary_(scaler_row, scaler_row, norms, BinaryOp::add);
}

void WandaStats::use_exact_sum() {
  PT_CHECK(scaler_row.defined() && nsamples == 0 && !exact.defined(), "WandaStats::use_exact_sum: call it once, on "
           "constructed statistics, before their first batch");
  exact = ExactSum(1, scaler_row.size(0));
}

void WandaStats::refresh_from_exact_sum() {
  PT_CHECK(exact.defined() && nsamples > 0, "WandaStats::refresh_from_exact_sum: no exact sum of calibration sequences");
  scaler_row = exact.to_f32(1.0 / double(nsamples), scaler_row.device()).reshape({-1});
}

Tensor wanda_scores(const Tensor& weight, const WandaStats& stats) {
  check_weight_matrix("wanda_scores", weight, "weight");
  PT_CHECK(stats.scaler_row.defined() && stats.nsamples > 0, "wanda_scores: the statistics have seen no calibration "
           "batch (call WandaStats::add_batch first)");
  PT_CHECK(stats.scaler_row.size(0) == weight.size(1) && stats.scaler_row.device() == weight.device(),
           "wanda_scores: statistics ", stats.scaler_row.describe(), " do not match the weight ", weight.describe());
  return mul(abs(weight), sqrt(stats.scaler_row));
}

Tensor wanda_mask(const Tensor& weight, const WandaStats& stats, const SparsityPattern& pattern,
                  const Tensor& prev_keep, const std::string& variant) {
  return select_mask(wanda_scores(weight, stats), pattern, MaskGroup::row, prev_keep, variant);
}

}  // namespace pt::prune
