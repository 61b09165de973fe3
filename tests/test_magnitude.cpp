// Magnitude pruning: the lowest |W| per matrix or per row with exact counts, N:M, an iterative schedule that
// only grows the pruned set, and CUDA against the CPU.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "prune/magnitude.h"
#include "tests/test_util.h"

namespace pt::prune {
namespace {

using test::random_tensor;

// Pruned flags of the k smallest |w| among the values at `idx` (ties: lower index first).
void prune_smallest(const std::vector<float>& w, std::vector<size_t> idx, int64_t k, std::vector<uint8_t>& keep) {
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return std::abs(w[a]) < std::abs(w[b]); });
  for (int64_t t = 0; t < k; ++t) keep[idx[size_t(t)]] = 0;
}

TEST(Magnitude, PrunesTheSmallestMagnitudesExactly) {
  const int64_t rows = 24, cols = 40;
  const Tensor w = random_tensor({rows, cols}, 21);
  const Tensor w_before = w.clone();
  const std::vector<float> v = w.to_vector<float>();
  for (double s : {0.1, 0.5, 0.7}) {
    std::vector<uint8_t> matrix(v.size(), 1), row(v.size(), 1);
    std::vector<size_t> all(v.size());
    std::iota(all.begin(), all.end(), size_t(0));
    prune_smallest(v, all, pruned_count(rows * cols, s), matrix);
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<size_t> idx(static_cast<size_t>(cols));
      std::iota(idx.begin(), idx.end(), size_t(r * cols));
      prune_smallest(v, idx, pruned_count(cols, s), row);
    }
    for (const std::string k : {"reference", "unfused"}) {
      const SparsityPattern p = SparsityPattern::unstructured(s);
      EXPECT_TRUE(test::tensors_equal(magnitude_mask(w, p, MaskGroup::matrix, {}, k),
                                      Tensor::from_vector<uint8_t>(matrix, {rows, cols})));
      EXPECT_TRUE(test::tensors_equal(magnitude_mask(w, p, MaskGroup::row, {}, k),
                                      Tensor::from_vector<uint8_t>(row, {rows, cols})));
    }
  }
  EXPECT_TRUE(test::tensors_equal(w, w_before));  // the weight is only read
}

TEST(Magnitude, NmKeepsTheLargestInEveryGroup) {
  const Tensor w = random_tensor({16, 32}, 22);
  const std::vector<float> v = w.to_vector<float>();
  std::vector<uint8_t> expected(v.size(), 1);
  for (size_t g = 0; g < v.size(); g += 4) prune_smallest(v, {g, g + 1, g + 2, g + 3}, 2, expected);
  for (const std::string k : {"reference", "unfused"}) {
    const Tensor keep = magnitude_mask(w, SparsityPattern::nm(2, 4), MaskGroup::matrix, {}, k);
    EXPECT_TRUE(is_nm_mask(keep, 2, 4));
    EXPECT_TRUE(test::tensors_equal(keep, Tensor::from_vector<uint8_t>(expected, {16, 32})));
  }
}

// Prune, "retrain" (perturb the kept weights, pruned ones stay 0), prune further: 0.1 -> ... -> 0.8.
TEST(Magnitude, IterativeScheduleGrowsThePrunedSet) {
  for (MaskGroup group : {MaskGroup::matrix, MaskGroup::row}) {
    Tensor w = random_tensor({32, 48}, 23);
    Tensor prev;
    for (int step = 1; step <= 8; ++step) {
      const double s = step / 10.0;
      const Tensor keep = magnitude_mask(w, SparsityPattern::unstructured(s), group, prev);
      if (prev.defined()) {
        EXPECT_TRUE(mask_contains_pruned(keep, prev)) << "step " << step;
      }
      EXPECT_EQ(mask_pruned_count(keep), group == MaskGroup::matrix ? pruned_count(32 * 48, s) : 32 * pruned_count(48, s));
      w = apply_mask(add(w, mul_scalar(random_tensor({32, 48}, 200 + step), 0.05)), keep);
      prev = keep;
    }
    EXPECT_NEAR(mask_sparsity(prev), 0.8, 0.01);
  }
}

TEST(CudaMagnitude, MatchesTheCpu) {
  PT_SKIP_IF_NO_CUDA();
  const Tensor w = random_tensor({96, 384}, 24);
  const Tensor prev = compare_scalar(random_tensor({96, 384}, 25, 0.0, 1.0), 0.2, CompareOp::ge);
  for (const SparsityPattern& p : {SparsityPattern::unstructured(0.5), SparsityPattern::unstructured(0.7),
                                   SparsityPattern::nm(2, 4)})
    for (MaskGroup group : {MaskGroup::matrix, MaskGroup::row}) {
      const Tensor pv = p.is_nm() ? Tensor() : prev;
      const Tensor expected = magnitude_mask(w, p, group, pv, "reference");
      for (const std::string k : {"fused", "unfused"})
        EXPECT_TRUE(test::tensors_equal(
            magnitude_mask(w.to(Device::cuda), p, group, pv.defined() ? pv.to(Device::cuda) : Tensor(), k).to(Device::cpu),
            expected))
            << p.describe() << " " << mask_group_name(group) << " " << k;
    }
}

}  // namespace
}  // namespace pt::prune
