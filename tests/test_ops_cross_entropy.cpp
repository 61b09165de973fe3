// cross_entropy (fused log-softmax + NLL with ignore_index, mean|sum) and its backward against naive
// loops over std::vector<double> and central finite differences; the Cuda* suites compare CUDA with
// the CPU.
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "tests/test_util.h"

namespace pt {
namespace {

using test::expect_error;
using test::random_tensor;

constexpr int64_t kIgnore = -100;

struct NaiveCe {
  double loss;
  int64_t count;
  Tensor lse, grad;
};

// loss from log-probabilities computed per row; grad of (grad_loss * loss) as softmax - onehot.
NaiveCe naive_cross_entropy(const Tensor& logits, const std::vector<int64_t>& t, int64_t ignore, bool mean,
                            double grad_loss) {
  const auto x = logits.to_vector<double>();
  const int64_t n = logits.size(0), v = logits.size(1);
  std::vector<double> lse(static_cast<size_t>(n)), grad(x.size(), 0.0);
  double total = 0;
  int64_t count = 0;
  for (int64_t r = 0; r < n; ++r) {
    double s = 0;
    for (int64_t j = 0; j < v; ++j) s += std::exp(x[size_t(r * v + j)]);  // inputs are small: no max shift needed
    lse[size_t(r)] = std::log(s);
    if (t[size_t(r)] == ignore) continue;
    total -= x[size_t(r * v + t[size_t(r)])] - std::log(s);  // -log p[target]
    ++count;
  }
  const double scale = mean ? (count ? grad_loss / double(count) : 0.0) : grad_loss;
  for (int64_t r = 0; r < n; ++r) {
    if (t[size_t(r)] == ignore) continue;
    for (int64_t j = 0; j < v; ++j)
      grad[size_t(r * v + j)] = scale * (std::exp(x[size_t(r * v + j)]) / std::exp(lse[size_t(r)]) - (j == t[size_t(r)]));
  }
  const double loss = mean ? (count ? total / double(count) : 0.0) : total;
  return {loss, count, Tensor::from_vector<double>(lse, {n}), Tensor::from_vector<double>(grad, logits.shape())};
}

// Targets in [0, v) with every third row set to `ignore`.
std::vector<int64_t> make_targets(int64_t n, int64_t v, uint64_t seed, int64_t ignore) {
  std::vector<int64_t> t(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) t[size_t(r)] = r % 3 == 1 ? ignore : int64_t(random_uniform01(seed, uint64_t(r)) * double(v));
  return t;
}

void expect_matches_naive(const Tensor& logits, const std::vector<int64_t>& t, int64_t ignore, Reduction red) {
  const bool mean = red == Reduction::mean;
  SCOPED_TRACE(::testing::Message() << logits.describe() << (mean ? " mean" : " sum") << " ignore " << ignore);
  const bool f64 = logits.dtype() == DType::f64;
  const test::Tolerance tol = f64 ? test::kF64 : test::kElementwiseF32;
  Tensor targets = Tensor::from_vector<int64_t>(t, {int64_t(t.size())});
  const double g = 0.7;
  NaiveCe want = naive_cross_entropy(logits, t, ignore, mean, g);
  CrossEntropyOut out = cross_entropy(logits, targets, ignore, red);
  EXPECT_EQ(out.loss.dim(), 0);
  EXPECT_EQ(out.loss.dtype(), f64 ? DType::f64 : DType::f32);
  EXPECT_EQ(out.count.dtype(), DType::i64);
  EXPECT_NEAR(out.loss.item(), want.loss, tol.atol + tol.rtol * std::abs(want.loss));
  EXPECT_EQ(int64_t(out.count.item()), want.count);
  PT_EXPECT_CLOSE(out.lse, want.lse, tol);
  Tensor grad = cross_entropy_backward(logits, targets, out, Tensor::full({}, g, out.loss.dtype()), ignore, red);
  EXPECT_EQ(grad.dtype(), logits.dtype());
  PT_EXPECT_CLOSE(grad, want.grad, tol);
}

TEST(OpsCrossEntropy, MatchesNaiveWithIgnoredRows) {
  uint64_t seed = 1300;
  for (DType dt : {DType::f32, DType::f64})
    for (Reduction red : {Reduction::mean, Reduction::sum})
      for (const auto& [n, v] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {7, 11}, {16, 130}, {5, 3}}) {
        Tensor logits = random_tensor({n, v}, ++seed, -3, 3, dt);
        expect_matches_naive(logits, make_targets(n, v, ++seed, kIgnore), kIgnore, red);
      }
}

TEST(OpsCrossEntropy, NonContiguousLogitsAndCustomIgnoreIndex) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor logits = random_tensor({9, 6}, 1320, -2, 2, dt).t();  // [6, 9], column-major
    // ignore_index 2 is also a valid class: rows with target 2 are skipped, not scored.
    expect_matches_naive(logits, {2, 0, 8, 2, 5, 2}, 2, Reduction::mean);
    expect_matches_naive(random_tensor({6, 20}, 1321, -2, 2, dt).narrow(1, 3, 9), {1, 0, 8, 4, 5, 7}, kIgnore,
                         Reduction::sum);
  }
}

TEST(OpsCrossEntropy, AllIgnoredMeanIsZero) {
  Tensor logits = random_tensor({4, 5}, 1330);
  Tensor targets = Tensor::full({4}, double(kIgnore), DType::i64);
  for (Reduction red : {Reduction::mean, Reduction::sum}) {
    CrossEntropyOut out = cross_entropy(logits, targets, kIgnore, red);
    EXPECT_EQ(out.loss.item(), 0.0);
    EXPECT_EQ(out.count.item(), 0.0);
    Tensor grad = cross_entropy_backward(logits, targets, out, Tensor::ones({}), kIgnore, red);
    for (double g : grad.to_vector<double>()) EXPECT_EQ(g, 0.0);
  }
}

TEST(OpsCrossEntropy, BackwardMatchesFiniteDifferences) {
  Tensor logits = random_tensor({5, 7}, 1340, -2, 2, DType::f64);
  const std::vector<int64_t> t = make_targets(5, 7, 1341, kIgnore);
  Tensor targets = Tensor::from_vector<int64_t>(t, {5});
  for (Reduction red : {Reduction::mean, Reduction::sum}) {
    CrossEntropyOut out = cross_entropy(logits, targets, kIgnore, red);
    Tensor analytic = cross_entropy_backward(logits, targets, out, Tensor::full({}, 1.3, DType::f64), kIgnore, red);
    Tensor numeric = test::numeric_gradient(
        [&](const Tensor& l) { return 1.3 * cross_entropy(l, targets, kIgnore, red).loss.item(); }, logits);
    PT_EXPECT_CLOSE(analytic, numeric, (test::Tolerance{1e-6, 1e-8}));
  }
}

TEST(OpsCrossEntropy, ErrorsNameTheOp) {
  Tensor logits = random_tensor({3, 5}, 1350);
  expect_error([&] { cross_entropy(logits, Tensor::from_vector<int64_t>({0, 5, 1}, {3})); },
               "cross_entropy: target 5 at row 1");
  expect_error([&] { cross_entropy(logits, Tensor::from_vector<int64_t>({0, -3, 1}, {3})); }, "cross_entropy: target -3");
  expect_error([&] { cross_entropy(logits, Tensor::from_vector<int64_t>({0, 1}, {2})); }, "cross_entropy");
  expect_error([&] { cross_entropy(logits, Tensor::from_vector<int32_t>({0, 1, 2}, {3})); }, "cross_entropy");
  expect_error([&] { cross_entropy(random_tensor({3}, 1351), Tensor::from_vector<int64_t>({0, 1, 2}, {3})); },
               "cross_entropy");
  Tensor targets = Tensor::from_vector<int64_t>({0, 1, 2}, {3});
  CrossEntropyOut out = cross_entropy(logits, targets);
  expect_error([&] { cross_entropy_backward(logits, targets, out, Tensor::ones({2})); }, "cross_entropy_backward");
  CrossEntropyOut bad = out;
  bad.lse = Tensor::zeros({4});
  expect_error([&] { cross_entropy_backward(logits, targets, bad, Tensor::ones({})); }, "cross_entropy_backward");
}

// ---- CUDA against the CPU ------------------------------------------------------------------------

// logits [n, v] drawn in dtype dt; the CPU runs on the same rounded values in f32 (or f64).
void expect_cuda_matches_cpu(int64_t n, int64_t v, DType dt, uint64_t seed, int64_t ignore, Reduction red,
                             test::Tolerance tol) {
  const Tensor logits = random_tensor({n, v}, seed, -3, 3, dt);
  const std::vector<int64_t> t = make_targets(n, v, seed + 1, ignore);
  SCOPED_TRACE(::testing::Message() << logits.describe() << (red == Reduction::mean ? " mean" : " sum"));
  const DType ref = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor targets = Tensor::from_vector<int64_t>(t, {int64_t(t.size())});
  Tensor xr = logits.to(ref), xg = logits.to(Device::cuda), tg = targets.to(Device::cuda);
  CrossEntropyOut want = cross_entropy(xr, targets, ignore, red);
  CrossEntropyOut got = cross_entropy(xg, tg, ignore, red);
  EXPECT_TRUE(got.loss.is_cuda());
  EXPECT_EQ(got.loss.dtype(), ref);
  PT_EXPECT_CLOSE(got.loss, want.loss, tol);
  PT_EXPECT_CLOSE(got.lse, want.lse, tol);
  EXPECT_TRUE(test::tensors_equal(got.count, want.count));
  Tensor gw = cross_entropy_backward(xr, targets, want, Tensor::full({}, 0.9, ref), ignore, red);
  Tensor gg = cross_entropy_backward(xg, tg, got, Tensor::full({}, 0.9, ref, Device::cuda), ignore, red);
  EXPECT_EQ(gg.dtype(), logits.dtype());
  PT_EXPECT_CLOSE(gg, gw, tol);
}

TEST(CudaCrossEntropy, MatchesCpu) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  uint64_t seed = 1400;
  for (Reduction red : {Reduction::mean, Reduction::sum}) {
    for (const auto& [n, v] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {7, 11}, {33, 1000}, {4, 50272}, {3000, 17}})
      expect_cuda_matches_cpu(n, v, DType::f32, seed += 2, kIgnore, red, test::kReductionF32);
    expect_cuda_matches_cpu(9, 70, DType::f64, seed += 2, 4, red, test::kF64);
    for (DType dt : {DType::f16, DType::bf16}) expect_cuda_matches_cpu(64, 300, dt, seed += 2, kIgnore, red, test::kHalf);
  }
}

TEST(CudaCrossEntropy, AllIgnoredAndOutOfRange) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  Tensor logits = random_tensor({4, 5}, 1450, -1, 1, DType::f32, Device::cuda);
  Tensor ignored = Tensor::full({4}, double(kIgnore), DType::i64, Device::cuda);
  CrossEntropyOut out = cross_entropy(logits, ignored);
  EXPECT_EQ(out.loss.item(), 0.0);
  EXPECT_EQ(out.count.item(), 0.0);
  Tensor grad = cross_entropy_backward(logits, ignored, out, Tensor::ones({}, DType::f32, Device::cuda));
  for (double g : grad.to_vector<double>()) EXPECT_EQ(g, 0.0);
  Tensor bad = Tensor::from_vector<int64_t>({0, kIgnore, 7, 1}, {4}, Device::cuda);
  // Checked on the device, reported at the next synchronisation (the loss read) with the CPU's message.
  expect_error([&] { cross_entropy(logits, bad).loss.item(); },
               "cross_entropy: target 7 at row 2 is out of range [0, 5) for logits " + logits.describe());
  EXPECT_EQ(cross_entropy(logits, Tensor::zeros({4}, DType::i64, Device::cuda)).count.item(), 4.0);  // still usable
}

}  // namespace
}  // namespace pt
