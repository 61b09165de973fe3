// Wanda: the running feature-norm statistics against a naive double loop, the score, per-row exact masks,
// N:M, persistence and CUDA against the CPU.
#include <cmath>

#include "prune/wanda.h"
#include "tests/test_util.h"

namespace pt::prune {
namespace {

using test::expect_error;
using test::random_tensor;

TEST(Wanda, StatsAreTheRunningMeanOfSquaredFeatureNorms) {
  const int64_t cols = 24, seqlen = 7;
  WandaStats stats(cols, Device::cpu);
  // Naive: the reference's update in double, batch by batch (sizes in sequences 1, 3, 2).
  std::vector<double> scaler(cols, 0.0);
  int64_t n = 0;
  uint64_t seed = 31;
  for (int64_t b : {1, 3, 2}) {
    const Tensor x = random_tensor({b, seqlen, cols}, seed++, -2.0, 2.0);
    stats.add_batch(x, b);
    const std::vector<float> v = x.to_vector<float>();
    for (double& s : scaler) s *= double(n) / double(n + b);
    n += b;
    for (int64_t j = 0; j < cols; ++j) {
      double sq = 0;
      for (int64_t t = 0; t < b * seqlen; ++t) sq += double(v[size_t(t * cols + j)]) * v[size_t(t * cols + j)];
      scaler[size_t(j)] += sq / double(n);
    }
  }
  EXPECT_EQ(stats.nsamples, 6);
  PT_EXPECT_CLOSE(stats.scaler_row, Tensor::from_vector<double>(scaler, {cols}).to(DType::f32), test::kReductionF32);
}

TEST(Wanda, ScoresAndPerRowMasks) {
  const int64_t rows = 16, cols = 32;
  WandaStats stats;  // made by the first batch
  stats.add_batch(random_tensor({4, 10, cols}, 32, -1.0, 1.0), 4);
  const Tensor w = random_tensor({rows, cols}, 33);
  const Tensor scores = wanda_scores(w, stats);
  const std::vector<float> wv = w.to_vector<float>(), sr = stats.scaler_row.to_vector<float>();
  std::vector<float> expected(wv.size());
  for (size_t i = 0; i < wv.size(); ++i) expected[i] = std::abs(wv[i]) * std::sqrt(sr[i % size_t(cols)]);
  PT_EXPECT_CLOSE(scores, Tensor::from_vector<float>(expected, {rows, cols}), test::kElementwiseF32);

  for (const std::string k : {"reference", "unfused"}) {
    const Tensor keep = wanda_mask(w, stats, SparsityPattern::unstructured(0.5), {}, k);
    EXPECT_TRUE(test::tensors_equal(keep, select_mask(scores, SparsityPattern::unstructured(0.5), MaskGroup::row)));
    const std::vector<uint8_t> kv = keep.to_vector<uint8_t>();
    for (int64_t r = 0; r < rows; ++r) {  // each row: the 16 lowest scores of that row are pruned
      int64_t zeros = 0;
      float max_pruned = 0, min_kept = INFINITY;
      for (int64_t c = 0; c < cols; ++c) {
        const size_t i = size_t(r * cols + c);
        if (kv[i] == 0) ++zeros, max_pruned = std::max(max_pruned, expected[i]);
        else min_kept = std::min(min_kept, expected[i]);
      }
      EXPECT_EQ(zeros, 16);
      EXPECT_LE(max_pruned, min_kept * (1 + 1e-6f));
    }
    const Tensor nm = wanda_mask(w, stats, SparsityPattern::nm(2, 4), {}, k);
    EXPECT_TRUE(is_nm_mask(nm, 2, 4));
  }
}

TEST(Wanda, IterativeScheduleGrowsThePrunedSet) {
  const int64_t rows = 20, cols = 40;
  WandaStats stats(cols, Device::cpu);
  stats.add_batch(random_tensor({8, 5, cols}, 34), 8);
  Tensor w = random_tensor({rows, cols}, 35);
  Tensor prev;
  for (int step = 1; step <= 8; ++step) {
    const double s = step / 10.0;
    const Tensor keep = wanda_mask(w, stats, SparsityPattern::unstructured(s), prev);
    if (prev.defined()) {
      EXPECT_TRUE(mask_contains_pruned(keep, prev));
    }
    EXPECT_EQ(mask_pruned_count(keep), rows * pruned_count(cols, s));
    w = apply_mask(add(w, mul_scalar(random_tensor({rows, cols}, 300 + step), 0.05)), keep);
    prev = keep;
  }
}

TEST(Wanda, ErrorsNameTheProblem) {
  WandaStats empty;
  expect_error([&] { wanda_scores(Tensor::ones({2, 3}), empty); }, "no calibration batch");
  WandaStats stats(3, Device::cpu);
  expect_error([&] { stats.add_batch(Tensor::ones({2, 4}), 1); }, "does not match");
  expect_error([&] { stats.add_batch(Tensor::ones({2, 3}), 0); }, "sequences = 0");
  stats.add_batch(Tensor::ones({2, 3}), 1);
  expect_error([&] { wanda_scores(Tensor::ones({2, 5}), stats); }, "do not match");
}

TEST(CudaWanda, StatsAndMasksMatchTheCpu) {
  PT_SKIP_IF_NO_CUDA();
  const int64_t cols = 256;
  WandaStats cpu(cols, Device::cpu), gpu(cols, Device::cuda);
  for (int b = 0; b < 3; ++b) {
    const Tensor x = random_tensor({2, 64, cols}, 36 + b);
    cpu.add_batch(x, 2);
    gpu.add_batch(x.to(Device::cuda), 2);
  }
  PT_EXPECT_CLOSE(gpu.scaler_row.to(Device::cpu), cpu.scaler_row, test::kReductionF32);
  const Tensor w = random_tensor({128, cols}, 40);
  // Masks from the same statistics (the CPU's, copied) must agree exactly.
  WandaStats shared = cpu;
  shared.scaler_row = cpu.scaler_row.to(Device::cuda);
  for (const SparsityPattern& p : {SparsityPattern::unstructured(0.5), SparsityPattern::nm(2, 4)}) {
    const Tensor expected = wanda_mask(w, cpu, p, {}, "reference");
    for (const std::string k : {"fused", "unfused"})
      EXPECT_TRUE(test::tensors_equal(wanda_mask(w.to(Device::cuda), shared, p, {}, k).to(Device::cpu), expected))
          << p.describe() << " " << k;
  }
}

}  // namespace
}  // namespace pt::prune
