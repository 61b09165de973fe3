// Sparsity patterns: validation, parsing, the exact-count rule and keep-mask measurements.
#include "prune/pattern.h"
#include "tests/test_util.h"

namespace pt::prune {
namespace {

using test::expect_error;

TEST(PrunePattern, ConstructorsValidate) {
  const SparsityPattern u = SparsityPattern::unstructured(0.5);
  EXPECT_FALSE(u.is_nm());
  EXPECT_EQ(u.describe(), "unstructured 50%");
  const SparsityPattern nm = SparsityPattern::nm(2, 4);
  EXPECT_TRUE(nm.is_nm());
  EXPECT_DOUBLE_EQ(nm.sparsity, 0.5);
  EXPECT_EQ(nm.describe(), "2:4");
  EXPECT_EQ(SparsityPattern::unstructured(0.7).describe(), "unstructured 70%");
  expect_error([] { SparsityPattern::unstructured(1.0); }, "outside [0, 1)");
  expect_error([] { SparsityPattern::unstructured(-0.1); }, "outside [0, 1)");
  expect_error([] { SparsityPattern::unstructured(std::nan("")); }, "outside [0, 1)");
  expect_error([] { SparsityPattern::nm(4, 4); }, "0 < N < M");
  expect_error([] { SparsityPattern::nm(0, 4); }, "0 < N < M");
  SparsityPattern bad = SparsityPattern::nm(2, 4);
  bad.sparsity = 0.3;
  expect_error([&] { bad.validate(); }, "sparsity = 0.3");
}

TEST(PrunePattern, ParsesUnstructuredAndNm) {
  EXPECT_DOUBLE_EQ(parse_sparsity_pattern("unstructured", 0.6).sparsity, 0.6);
  const SparsityPattern a = parse_sparsity_pattern("2:4", -1.0);
  EXPECT_EQ(a.n, 2);
  EXPECT_EQ(a.m, 4);
  EXPECT_DOUBLE_EQ(a.sparsity, 0.5);
  const SparsityPattern b = parse_sparsity_pattern("4:8", 0.5);
  EXPECT_EQ(b.n, 4);
  EXPECT_EQ(b.m, 8);
  expect_error([] { parse_sparsity_pattern("2:4", 0.7); }, "prunes 0.5 of the weights but sparsity = 0.7");
  expect_error([] { parse_sparsity_pattern("dense", 0.5); }, "not understood");
  expect_error([] { parse_sparsity_pattern("2:x", 0.5); }, "not understood");
  expect_error([] { parse_sparsity_pattern("2:4:8", 0.5); }, "not understood");
  expect_error([] { parse_sparsity_pattern("4:2", -1.0); }, "0 < N < M");
  expect_error([] { parse_sparsity_pattern("unstructured", -1.0); }, "must be given");
  expect_error([] { parse_sparsity_pattern("unstructured", 1.5); }, "outside [0, 1)");
}

TEST(PrunePattern, PrunedCountIsExactFloor) {
  EXPECT_EQ(pruned_count(10, 0.7), 7);
  EXPECT_EQ(pruned_count(10, 0.3), 3);
  EXPECT_EQ(pruned_count(100, 0.29), 29);  // 0.29*100 = 28.999999999999996 in binary: the epsilon keeps it 29
  EXPECT_EQ(pruned_count(7, 0.5), 3);
  EXPECT_EQ(pruned_count(0, 0.5), 0);
  EXPECT_EQ(pruned_count(768 * 3072, 0.5), 768 * 3072 / 2);
  for (int tenth = 0; tenth < 10; ++tenth)
    EXPECT_EQ(pruned_count(1000, tenth / 10.0), tenth * 100) << "sparsity " << tenth / 10.0;
  expect_error([] { pruned_count(-1, 0.5); }, "negative");
  expect_error([] { pruned_count(10, 1.5); }, "outside [0, 1]");
}

TEST(PrunePattern, MaskMeasurements) {
  // Rows of 8: row 0 is 2:4 (two zeros per group), row 1 has 3 zeros in its first group and 2 in its second.
  const Tensor keep = Tensor::from_vector<uint8_t>({0, 1, 0, 1, 1, 0, 0, 1,  //
                                                    0, 0, 0, 1, 1, 0, 0, 1},
                                                   {2, 8});
  EXPECT_EQ(mask_pruned_count(keep), 9);
  EXPECT_DOUBLE_EQ(mask_sparsity(keep), 9.0 / 16.0);
  EXPECT_FALSE(is_nm_mask(keep, 2, 4));
  EXPECT_TRUE(is_nm_mask(keep, 2, 4, /*at_least=*/true));
  EXPECT_TRUE(is_nm_mask(keep.narrow(0, 0, 1).contiguous(), 2, 4));
  EXPECT_FALSE(is_nm_mask(keep, 2, 3));  // 8 columns do not split into groups of 3
  const Tensor fewer = Tensor::from_vector<uint8_t>({0, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0, 1}, {2, 8});
  EXPECT_TRUE(mask_contains_pruned(keep, fewer));
  EXPECT_FALSE(mask_contains_pruned(fewer, keep));
  expect_error([] { mask_sparsity(Tensor::ones({3}, DType::f32)); }, "u8 mask");
}

TEST(PrunePattern, ArgumentChecksNameTheArgument) {
  const Tensor w = Tensor::zeros({4, 8});
  expect_error([&] { check_weight_matrix("op", Tensor::zeros({4}), "weight"); }, "op: weight is f32[4]");
  expect_error([&] { check_keep_mask("op", Tensor::ones({4, 8}, DType::f32), w, "prev_keep"); }, "masks are u8");
  expect_error([&] { check_keep_mask("op", Tensor::ones({4, 4}, DType::u8), w, "prev_keep"); }, "does not match");
  check_keep_mask("op", Tensor(), w, "prev_keep");  // undefined is allowed
}

}  // namespace
}  // namespace pt::prune
