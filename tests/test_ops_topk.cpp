// topk and kth_value_all against a naive full sort, on the CPU and (Cuda* suites) CUDA against the CPU.
#include <algorithm>
#include <numeric>
#include <set>
#include <vector>

#include "tests/test_util.h"

namespace pt {
namespace {

using test::random_tensor;

// Naive top-k by a full stable sort of every line along `dim` (ties keep lower indices first).
TopKOut naive_topk(const Tensor& x, int64_t k, int64_t dim, bool largest) {
  const int64_t d = dim < 0 ? dim + x.dim() : dim;
  const auto v = x.to_vector<double>();
  const Shape& s = x.shape();
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < d; ++i) outer *= s[size_t(i)];
  for (int64_t i = d + 1; i < x.dim(); ++i) inner *= s[size_t(i)];
  const int64_t n = s[size_t(d)];
  std::vector<double> vals(size_t(outer * k * inner));
  std::vector<int64_t> idx(vals.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t in = 0; in < inner; ++in) {
      std::vector<int64_t> order(static_cast<size_t>(n));
      std::iota(order.begin(), order.end(), int64_t(0));
      auto val = [&](int64_t j) { return v[size_t((o * n + j) * inner + in)]; };
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return largest ? val(a) > val(b) : val(a) < val(b); });
      for (int64_t j = 0; j < k; ++j) {
        vals[size_t((o * k + j) * inner + in)] = val(order[size_t(j)]);
        idx[size_t((o * k + j) * inner + in)] = order[size_t(j)];
      }
    }
  Shape os = s;
  os[size_t(d)] = k;
  return {Tensor::from_vector<double>(vals, os), Tensor::from_vector<int64_t>(idx, os)};
}

// Indices are in range, distinct along the dim, and point at the reported values.
void expect_indices_consistent(const Tensor& x, const TopKOut& out, int64_t dim) {
  const int64_t d = dim < 0 ? dim + x.dim() : dim;
  const auto xv = x.to_vector<double>();
  const auto vv = out.values.to_vector<double>();
  const auto iv = out.indices.to_vector<int64_t>();
  const Shape& s = x.shape();
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < d; ++i) outer *= s[size_t(i)];
  for (int64_t i = d + 1; i < x.dim(); ++i) inner *= s[size_t(i)];
  const int64_t n = s[size_t(d)], k = out.values.size(d);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t in = 0; in < inner; ++in) {
      std::set<int64_t> seen;
      for (int64_t j = 0; j < k; ++j) {
        const size_t at = size_t((o * k + j) * inner + in);
        const int64_t ix = iv[at];
        ASSERT_TRUE(ix >= 0 && ix < n) << "index " << ix;
        EXPECT_TRUE(seen.insert(ix).second) << "index " << ix << " repeated";
        EXPECT_EQ(xv[size_t((o * n + ix) * inner + in)], vv[at]);
      }
    }
}

double naive_kth(const Tensor& x, int64_t k) {
  auto v = x.to_vector<double>();
  std::sort(v.begin(), v.end());
  return v[size_t(k - 1)];
}

TEST(OpsTopk, MatchesFullSortAlongEveryDim) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = random_tensor({7, 13, 5}, 201, -1, 1, dt);
    for (int64_t dim : {0, 1, 2, -1})
      for (bool largest : {true, false})
        for (int64_t k : {int64_t(1), int64_t(3), x.size(dim)}) {
          SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " dim=" << dim << " largest=" << largest << " k=" << k);
          TopKOut got = topk(x, k, dim, largest);
          TopKOut want = naive_topk(x, k, dim, largest);
          EXPECT_EQ(got.values.dtype(), dt);
          EXPECT_EQ(got.indices.dtype(), DType::i64);
          EXPECT_TRUE(test::tensors_equal(got.values, want.values));
          EXPECT_TRUE(test::tensors_equal(got.indices, want.indices));
        }
  }
}

TEST(OpsTopk, NonContiguousInputAndZeroK) {
  Tensor x = random_tensor({13, 7}, 202).t();  // [7, 13] transposed view
  TopKOut got = topk(x, 4, 1, true);
  TopKOut want = naive_topk(x, 4, 1, true);
  EXPECT_TRUE(test::tensors_equal(got.values, want.values));
  EXPECT_TRUE(test::tensors_equal(got.indices, want.indices));
  TopKOut none = topk(x, 0, 1);
  EXPECT_EQ(none.values.shape(), (Shape{7, 0}));
  EXPECT_EQ(none.indices.shape(), (Shape{7, 0}));
}

TEST(OpsTopk, TiesGiveExactValues) {
  // Values from a small set: many ties. Values must be exact; indices must point at them.
  std::vector<float> v(6 * 40);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float((i * 7919) % 5) - 2.0f;
  Tensor x = Tensor::from_vector<float>(v, {6, 40});
  for (bool largest : {true, false}) {
    TopKOut got = topk(x, 17, -1, largest);
    EXPECT_TRUE(test::tensors_equal(got.values, naive_topk(x, 17, -1, largest).values));
    expect_indices_consistent(x, got, -1);
  }
}

TEST(OpsKthValue, MatchesFullSort) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = random_tensor({7, 13, 5}, 211, -3, 3, dt);
    for (int64_t k : {int64_t(1), int64_t(2), int64_t(228), x.numel() - 1, x.numel()}) {
      Tensor got = kth_value_all(x, k);
      EXPECT_EQ(got.dim(), 0);
      EXPECT_EQ(got.dtype(), dt);
      EXPECT_EQ(got.item(), naive_kth(x, k)) << "k=" << k;
    }
    Tensor view = x.permute({2, 0, 1});
    EXPECT_EQ(kth_value_all(view, 100).item(), naive_kth(x, 100));
  }
}

TEST(OpsTopk, Errors) {
  Tensor x = random_tensor({4, 6}, 221);
  EXPECT_THROW(topk(x, 7, -1), Error);
  EXPECT_THROW(topk(x, -1, -1), Error);
  EXPECT_THROW(topk(x, 2, 2), Error);
  EXPECT_THROW(topk(Tensor::ones({4}, DType::i64), 2), Error);
  EXPECT_THROW(kth_value_all(x, 0), Error);
  EXPECT_THROW(kth_value_all(x, 25), Error);
  EXPECT_NO_THROW(kth_value_all(x, 24));
}

// ---- CUDA parity -------------------------------------------------------------------------------------

TEST(CudaTopk, MatchesCpuExactly) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = random_tensor({7, 13, 5}, 231, -1, 1, dt);
    Tensor xd = x.to(Device::cuda);
    for (int64_t dim : {0, 1, 2})
      for (bool largest : {true, false})
        for (int64_t k : {int64_t(1), int64_t(3), x.size(dim)}) {
          SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " dim=" << dim << " largest=" << largest << " k=" << k);
          TopKOut got = topk(xd, k, dim, largest), want = topk(x, k, dim, largest);
          EXPECT_TRUE(got.values.is_cuda());
          EXPECT_TRUE(test::tensors_equal(got.values, want.values));
          EXPECT_TRUE(test::tensors_equal(got.indices, want.indices));
        }
  }
  // One long row takes the unsegmented sort; many rows the segmented one.
  Tensor row = random_tensor({100003}, 232);
  for (bool largest : {true, false}) {
    TopKOut got = topk(row.to(Device::cuda), 1000, 0, largest), want = topk(row, 1000, 0, largest);
    EXPECT_TRUE(test::tensors_equal(got.values, want.values));
    EXPECT_TRUE(test::tensors_equal(got.indices, want.indices));
  }
  Tensor rows = random_tensor({300, 777}, 233);
  TopKOut got = topk(rows.to(Device::cuda), 50, 1, false), want = topk(rows, 50, 1, false);
  EXPECT_TRUE(test::tensors_equal(got.values, want.values));
  EXPECT_TRUE(test::tensors_equal(got.indices, want.indices));
}

TEST(CudaTopk, HalfAndTies) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  for (DType half : {DType::f16, DType::bf16}) {
    SCOPED_TRACE(dtype_name(half));
    Tensor x = random_tensor({9, 61}, 241).to(half).to(DType::f32);  // exactly representable in half
    for (bool largest : {true, false}) {
      TopKOut got = topk(x.to(Device::cuda, half), 20, -1, largest);
      TopKOut want = topk(x, 20, -1, largest);
      EXPECT_EQ(got.values.dtype(), half);
      EXPECT_TRUE(test::tensors_equal(got.values.to(DType::f32), want.values));
      expect_indices_consistent(x, {got.values.to(DType::f32), got.indices}, -1);
    }
  }
  std::vector<float> v(6 * 40);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float((i * 7919) % 5) - 2.0f;
  Tensor ties = Tensor::from_vector<float>(v, {6, 40});
  TopKOut got = topk(ties.to(Device::cuda), 17, -1, true);
  EXPECT_TRUE(test::tensors_equal(got.values, topk(ties, 17, -1, true).values));
  expect_indices_consistent(ties, got, -1);
}

TEST(CudaKthValue, MatchesCpuExactly) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = random_tensor({301, 257}, 251, -5, 5, dt);
    Tensor xd = x.to(Device::cuda);
    for (int64_t k : {int64_t(1), int64_t(7), x.numel() / 2, x.numel()}) {
      Tensor got = kth_value_all(xd, k);
      EXPECT_TRUE(got.is_cuda());
      EXPECT_EQ(got.dim(), 0);
      EXPECT_EQ(got.item(), kth_value_all(x, k).item()) << "k=" << k;
    }
    EXPECT_EQ(kth_value_all(xd.t(), 1234).item(), naive_kth(x, 1234));
  }
  for (DType half : {DType::f16, DType::bf16}) {
    Tensor x = random_tensor({1000}, 252).to(half).to(DType::f32);
    EXPECT_EQ(kth_value_all(x.to(Device::cuda, half), 321).item(), naive_kth(x, 321)) << dtype_name(half);
  }
  EXPECT_THROW(kth_value_all(Tensor::ones({3}, DType::f32, Device::cuda), 4), Error);
}

}  // namespace
}  // namespace pt
