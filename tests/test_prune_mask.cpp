// Mask selection: exact counts per group, the tie and forced-position order, N:M validity, persistence over
// an iterative schedule, errors; reference and unfused against a naive full sort written here, and the CUDA
// kernels against the CPU (skipped without a GPU).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <numeric>

#include "prune/mask.h"
#include "prune/mask_small_groups.h"
#include "tests/test_util.h"

namespace pt::prune {
namespace {

using test::expect_error;
using test::random_tensor;

// Scores on a coarse grid, so that many are equal (ties decide part of every mask).
Tensor tied_scores(int64_t rows, int64_t cols, uint64_t seed, double levels = 16.0, Device device = Device::cpu) {
  const std::vector<float> u = random_tensor({rows, cols}, seed, 0.0, 1.0).to_vector<float>();
  std::vector<float> q(u.size());
  for (size_t i = 0; i < u.size(); ++i) q[i] = float(std::floor(u[i] * levels) / levels);
  return Tensor::from_vector<float>(q, {rows, cols}, device);
}

// A random keep mask with about `pruned` of its positions 0.
Tensor random_keep(int64_t rows, int64_t cols, uint64_t seed, double pruned) {
  return compare_scalar(random_tensor({rows, cols}, seed, 0.0, 1.0), pruned, CompareOp::ge);
}

// The documented order by a full sort: forced first, then the score (NaN as +inf, -inf as the lowest finite
// number), then the index inside the group; the first k of each contiguous group of `size` are pruned.
std::vector<uint8_t> naive_select(const Tensor& scores, const Tensor& prev, int64_t size, int64_t k) {
  const std::vector<float> s = scores.to_vector<float>();
  const std::vector<uint8_t> p = prev.defined() ? prev.to_vector<uint8_t>() : std::vector<uint8_t>(s.size(), 1);
  auto value = [&](size_t i) {
    const float v = s[i];
    if (std::isnan(v)) return std::numeric_limits<float>::infinity();
    return v == -std::numeric_limits<float>::infinity() ? -FLT_MAX : v;
  };
  std::vector<uint8_t> keep(s.size(), 1);
  for (size_t base = 0; base < s.size(); base += size_t(size)) {
    std::vector<size_t> order(static_cast<size_t>(size));
    std::iota(order.begin(), order.end(), base);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      if ((p[a] == 0) != (p[b] == 0)) return p[a] == 0;
      if (value(a) != value(b)) return value(a) < value(b);
      return a < b;
    });
    for (int64_t t = 0; t < k; ++t) keep[order[size_t(t)]] = 0;
  }
  return keep;
}

Tensor naive_mask(const Tensor& scores, const SparsityPattern& pattern, MaskGroup group, const Tensor& prev = {}) {
  const int64_t rows = scores.size(0), cols = scores.size(1);
  std::vector<uint8_t> keep;
  if (pattern.is_nm()) keep = naive_select(scores, prev, pattern.m, pattern.n);
  else if (group == MaskGroup::row) keep = naive_select(scores, prev, cols, pruned_count(cols, pattern.sparsity));
  else keep = naive_select(scores, prev, rows * cols, pruned_count(rows * cols, pattern.sparsity));
  return Tensor::from_vector<uint8_t>(keep, {rows, cols});
}

// Every mask variant that runs on the CPU.
const std::vector<std::string> kCpuKernels = mask_family().names_on(Device::cpu);

TEST(PruneMask, UnstructuredCountsAndTiesMatchNaiveSort) {
  const Tensor scores = tied_scores(37, 53, 11);
  for (MaskGroup group : {MaskGroup::matrix, MaskGroup::row})
    for (double s : {0.0, 0.1, 0.25, 0.5, 0.7, 0.93}) {
      const SparsityPattern p = SparsityPattern::unstructured(s);
      const Tensor expected = naive_mask(scores, p, group);
      for (const std::string k : kCpuKernels) {
        SCOPED_TRACE(std::string(mask_group_name(group)) + " " + p.describe() + " " + k);
        const Tensor keep = select_mask(scores, p, group, {}, k);
        EXPECT_TRUE(test::tensors_equal(keep, expected));
        if (group == MaskGroup::matrix) {
          EXPECT_EQ(mask_pruned_count(keep), pruned_count(37 * 53, s));
        } else {
          const Tensor per_row = sum(compare_scalar(keep, 0.0, CompareOp::eq).to(DType::f64), 1);
          for (double c : per_row.to_vector<double>()) EXPECT_EQ(int64_t(c), pruned_count(53, s));
        }
      }
    }
}

TEST(PruneMask, NmGroupsMatchNaiveSortAndAreValid) {
  const Tensor scores = tied_scores(19, 48, 12, 4.0);
  for (auto [n, m] : {std::pair<int64_t, int64_t>{2, 4}, {4, 8}, {1, 4}, {3, 16}}) {
    const SparsityPattern p = SparsityPattern::nm(n, m);
    const Tensor expected = naive_mask(scores, p, MaskGroup::row);
    for (const std::string k : kCpuKernels)
      for (MaskGroup group : {MaskGroup::matrix, MaskGroup::row}) {  // N:M ignores the group
        SCOPED_TRACE(p.describe() + " " + k);
        const Tensor keep = select_mask(scores, p, group, {}, k);
        EXPECT_TRUE(test::tensors_equal(keep, expected));
        EXPECT_TRUE(is_nm_mask(keep, n, m));
      }
  }
}

TEST(PruneMask, ForcedPositionsComeFirstAndCount) {
  const Tensor scores = random_tensor({23, 40}, 13, 0.0, 1.0);
  const Tensor prev = random_keep(23, 40, 14, 0.2);
  for (MaskGroup group : {MaskGroup::matrix, MaskGroup::row}) {
    const SparsityPattern p = SparsityPattern::unstructured(0.6);
    const Tensor expected = naive_mask(scores, p, group, prev);
    for (const std::string k : kCpuKernels) {
      const Tensor keep = select_mask(scores, p, group, prev, k);
      EXPECT_TRUE(test::tensors_equal(keep, expected)) << k;
      EXPECT_TRUE(mask_contains_pruned(keep, prev));
    }
  }
  // N:M with at most 2 forced per group of 4.
  std::vector<uint8_t> pv(23 * 40, 1);
  for (size_t i = 0; i < pv.size(); i += 4) pv[i + (i / 4) % 4] = 0;  // one forced in each group, varying place
  const Tensor prev_nm = Tensor::from_vector<uint8_t>(pv, {23, 40});
  const Tensor expected = naive_mask(scores, SparsityPattern::nm(2, 4), MaskGroup::row, prev_nm);
  for (const std::string k : kCpuKernels) {
    const Tensor keep = select_mask(scores, SparsityPattern::nm(2, 4), MaskGroup::row, prev_nm, k);
    EXPECT_TRUE(test::tensors_equal(keep, expected)) << k;
    EXPECT_TRUE(mask_contains_pruned(keep, prev_nm));
  }
}

// The iterative schedule of Prune and Tune (A.1.1): 0.1 -> 0.2 -> ... -> 0.8 with fresh scores each time
// (retraining changes the weights); the pruned set only grows and every total is exact.
TEST(PruneMask, IterativeScheduleKeepsEveryPrunedPosition) {
  for (MaskGroup group : {MaskGroup::matrix, MaskGroup::row})
    for (const std::string k : {"reference", "unfused"}) {
      Tensor prev;
      for (int step = 1; step <= 8; ++step) {
        const double s = step / 10.0;
        const Tensor scores = random_tensor({30, 50}, 100 + step, -1.0, 1.0);
        const Tensor keep = select_mask(scores, SparsityPattern::unstructured(s), group, prev, k);
        EXPECT_TRUE(test::tensors_equal(keep, naive_mask(scores, SparsityPattern::unstructured(s), group, prev)));
        if (prev.defined()) {
          EXPECT_TRUE(mask_contains_pruned(keep, prev)) << "step " << step;
        }
        const int64_t expected = group == MaskGroup::matrix ? pruned_count(1500, s) : 30 * pruned_count(50, s);
        EXPECT_EQ(mask_pruned_count(keep), expected) << "step " << step;
        prev = keep;
      }
    }
}

TEST(PruneMask, NonFiniteScoresFollowTheDocumentedOrder) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const Tensor scores = Tensor::from_vector<float>({nan, 1.0f, -inf, 0.0f, -0.0f, inf, -FLT_MAX, nan,  //
                                                    -0.0f, 0.0f, inf, nan, 2.0f, -inf, -inf, 0.5f},
                                                   {2, 8});
  for (int64_t k = 0; k <= 8; ++k)
    for (const std::string kernel : kCpuKernels) {
      const Tensor keep = select_lowest_k(scores, k, MaskGroup::row, {}, kernel);
      const Tensor expected = Tensor::from_vector<uint8_t>(naive_select(scores, {}, 8, k), {2, 8});
      EXPECT_TRUE(test::tensors_equal(keep, expected)) << "k " << k << " " << kernel;
    }
}

TEST(PruneMask, OverfullGroupsAreErrorsNamingTheGroup) {
  const Tensor scores = random_tensor({4, 8}, 15, 0.0, 1.0);
  std::vector<uint8_t> pv(32, 1);
  for (int j = 0; j < 6; ++j) pv[2 * 8 + j] = 0;  // row 2: 6 of 8 pruned
  const Tensor prev = Tensor::from_vector<uint8_t>(pv, {4, 8});
  for (const std::string k : kCpuKernels) {
    expect_error([&] { select_mask(scores, SparsityPattern::unstructured(0.5), MaskGroup::row, prev, k); },
                 "row 2 already has 6 positions pruned in prev_keep, more than the 4");
    expect_error([&] { select_mask(scores, SparsityPattern::unstructured(0.1), MaskGroup::matrix, prev, k); },
                 "the matrix already has 6 positions pruned in prev_keep, more than the 3");
    expect_error([&] { select_mask(scores, SparsityPattern::nm(2, 4), MaskGroup::row, prev, k); },
                 "group at row 2, columns 0..3 already has 4 positions pruned in prev_keep, more than the 2");
  }
}

TEST(PruneMask, BadArgumentsAreErrors) {
  const Tensor scores = random_tensor({4, 6}, 16, 0.0, 1.0);
  expect_error([&] { select_mask(scores, SparsityPattern::nm(2, 4), MaskGroup::row); }, "multiple of 4");
  expect_error([&] { select_mask(scores.to(DType::f64), SparsityPattern::unstructured(0.5), MaskGroup::row); },
               "f32 matrix");
  expect_error([&] { select_mask(scores, SparsityPattern::unstructured(0.5), MaskGroup::row, Tensor::ones({4, 5}, DType::u8)); },
               "does not match");
  expect_error([&] { select_lowest_k(scores, 7, MaskGroup::row); }, "k = 7 is outside [0, 6]");
  expect_error([] { parse_mask_group("column"); }, "allowed: matrix, row");
  EXPECT_EQ(parse_mask_group("row"), MaskGroup::row);
}

// The CUDA small-group kernel's lane steps (mask_small_groups.h) run here over whole warps: every element of
// every group is handled by exactly one lane, and pruning the elements of rank < k is the documented order.
TEST(PruneMask, SmallGroupLaneStepsSelectLikeTheNaiveSort) {
  using detail::kSmallGroupMax;
  for (int size = 1; size <= kSmallGroupMax; ++size) {
    const int64_t groups = 7, rows = 1, cols = groups * size;
    const Tensor scores = tied_scores(rows, cols, 30 + uint64_t(size), 4.0);
    const Tensor prev = random_keep(rows, cols, 60 + uint64_t(size), 0.2);
    const std::vector<float> s = scores.to_vector<float>();
    const std::vector<uint8_t> p = prev.to_vector<uint8_t>();
    // The kernel's key order (prune/mask.h): forced 0, then the scores (all finite here) in ascending order.
    std::vector<uint32_t> keys(s.size());
    std::vector<float> sorted = s;
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 0; i < s.size(); ++i)
      keys[i] = p[i] == 0 ? 0u : 1u + uint32_t(std::lower_bound(sorted.begin(), sorted.end(), s[i]) - sorted.begin());
    for (int64_t k : {int64_t(0), int64_t(1), int64_t(size / 2), int64_t(size)}) {
      SCOPED_TRACE(::testing::Message() << "size " << size << " k " << k);
      std::vector<int> handled(s.size(), 0);
      std::vector<uint8_t> keep(s.size(), 2);
      const int64_t per_warp = kSmallGroupMax / size, warps = (groups + per_warp - 1) / per_warp;
      for (int64_t w = 0; w < warps; ++w)
        for (int l = 0; l < 32; ++l) {
          const detail::SmallGroupLane lane = detail::small_group_lane(l, size);
          const int64_t g = w * per_warp + lane.slot;
          if (!lane.used || g >= groups) continue;
          const size_t i = size_t(g * size + lane.element);
          ++handled[i];
          const uint32_t rank = detail::rank_in_group(keys[i], lane.element, size,
                                                      [&](int q) { return keys[size_t(g * size + q)]; });
          keep[i] = rank < uint32_t(k) ? 0 : 1;
        }
      EXPECT_EQ(handled, std::vector<int>(s.size(), 1));
      // Forced positions over k are an error the kernel reports; compare only the groups that fit.
      const std::vector<uint8_t> expected = naive_select(scores, prev, size, k);
      for (int64_t g = 0; g < groups; ++g) {
        int64_t forced = 0;
        for (int64_t j = 0; j < size; ++j) forced += p[size_t(g * size + j)] == 0;
        if (forced > k) continue;
        for (int64_t j = 0; j < size; ++j)
          EXPECT_EQ(keep[size_t(g * size + j)], expected[size_t(g * size + j)]) << "group " << g << " element " << j;
      }
    }
  }
}

// ---- CUDA against the CPU --------------------------------------------------------------------------------

TEST(CudaPruneMask, FusedAndUnfusedMatchTheCpuOnManyShapes) {
  PT_SKIP_IF_NO_CUDA();
  struct Case { int64_t rows, cols; double levels; };
  // 300x100 spans four radix chunks for the matrix group, with ties across chunks; 5x20000 has multi-chunk rows.
  for (const Case c : {Case{37, 53, 16}, Case{300, 100, 32}, Case{5, 20000, 64}, Case{64, 768, 1e9}, Case{3, 4, 2}}) {
    const Tensor scores = tied_scores(c.rows, c.cols, 17, c.levels);
    const Tensor prev = random_keep(c.rows, c.cols, 18, 0.15);
    for (MaskGroup group : {MaskGroup::matrix, MaskGroup::row})
      for (double s : {0.0, 0.3, 0.5, 0.8})
        for (bool with_prev : {false, true}) {
          const SparsityPattern p = SparsityPattern::unstructured(s);
          const Tensor pv = with_prev && s >= 0.3 ? prev : Tensor();
          const Tensor expected = select_mask(scores, p, group, pv, "reference");
          for (const std::string k : {"fused", "unfused"}) {
            SCOPED_TRACE(::testing::Message() << c.rows << "x" << c.cols << " " << mask_group_name(group) << " " << s
                                              << " prev " << with_prev << " " << k);
            const Tensor keep = select_mask(scores.to(Device::cuda), p, group,
                                            pv.defined() ? pv.to(Device::cuda) : Tensor(), k);
            EXPECT_TRUE(keep.is_cuda());
            EXPECT_TRUE(test::tensors_equal(keep.to(Device::cpu), expected));
          }
        }
  }
}

TEST(CudaPruneMask, NmAndErrorsMatchTheCpu) {
  PT_SKIP_IF_NO_CUDA();
  const Tensor scores = tied_scores(33, 64, 19, 4.0);
  for (auto [n, m] : {std::pair<int64_t, int64_t>{2, 4}, {4, 8}, {3, 16}, {16, 64}}) {
    const SparsityPattern p = SparsityPattern::nm(n, m);
    const Tensor expected = select_mask(scores, p, MaskGroup::row, {}, "reference");
    for (const std::string k : {"fused", "unfused"})
      EXPECT_TRUE(test::tensors_equal(select_mask(scores.to(Device::cuda), p, MaskGroup::row, {}, k).to(Device::cpu),
                                      expected))
          << p.describe() << " " << k;
  }
  std::vector<uint8_t> pv(33 * 64, 1);
  for (int j = 0; j < 3; ++j) pv[5 * 64 + 8 + j] = 0;  // row 5, columns 8..10
  const Tensor prev = Tensor::from_vector<uint8_t>(pv, {33, 64}, Device::cuda);
  for (const std::string k : {"fused", "unfused"}) {
    expect_error([&] { select_mask(scores.to(Device::cuda), SparsityPattern::nm(2, 4), MaskGroup::row, prev, k); },
                 "group at row 5, columns 8..11 already has 3 positions pruned");
    expect_error([&] { select_lowest_k(scores.to(Device::cuda), 2, MaskGroup::row, prev, k); },
                 "row 5 already has 3 positions pruned in prev_keep, more than the 2");
  }
  expect_error([&] { select_mask(scores.to(Device::cuda), SparsityPattern::nm(2, 4), MaskGroup::row, {}, "reference"); },
               "variant 'reference' runs on cpu, not on cuda");
}

TEST(CudaPruneMask, SmallGroupsOfEverySizeMatchTheCpu) {
  PT_SKIP_IF_NO_CUDA();
  for (int64_t size = 1; size <= 32; ++size) {
    const int64_t rows = 9, cols = 11 * size;  // 99 groups: partial warps and a partial last block of warps
    const Tensor scores = tied_scores(rows, cols, 90 + uint64_t(size), 4.0);
    const Tensor prev = random_keep(rows, cols, 130 + uint64_t(size), 0.1);
    for (int64_t k : {int64_t(0), int64_t(1), (size + 1) / 2, size})
      for (bool with_prev : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "size " << size << " k " << k << " prev " << with_prev);
        const Tensor pv = with_prev ? prev : Tensor();
        std::string cpu_error, gpu_error;
        Tensor expected, keep;
        try {
          expected = select_lowest_k(scores, k, MaskGroup::row, pv, "reference", size);
        } catch (const Error& e) {
          cpu_error = e.what();
        }
        try {
          keep = select_lowest_k(scores.to(Device::cuda), k, MaskGroup::row,
                                 pv.defined() ? pv.to(Device::cuda) : Tensor(), "fused", size);
        } catch (const Error& e) {
          gpu_error = e.what();
        }
        EXPECT_EQ(cpu_error.empty(), gpu_error.empty()) << cpu_error << " | " << gpu_error;  // the same over-full group
        if (cpu_error.empty() && gpu_error.empty()) EXPECT_TRUE(test::tensors_equal(keep.to(Device::cpu), expected));
        else EXPECT_EQ(cpu_error.substr(0, cpu_error.find(" [")), gpu_error.substr(0, gpu_error.find(" [")));
      }
  }
}

}  // namespace
}  // namespace pt::prune
