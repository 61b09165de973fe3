// softmax (plain and causal), log_softmax and both backwards against naive loops over
// std::vector<double> and central finite differences; the Cuda* suites compare CUDA with the CPU.
#include <cmath>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace pt {
namespace {

using test::expect_error;
using test::random_tensor;

test::Tolerance tol_for(DType dt) { return dt == DType::f64 ? test::kF64 : test::kElementwiseF32; }

// Naive softmax / log-softmax of every last-dim row; with causal, row r is query r % Tq and key j is
// visible when j <= q + Tk - Tq (fully masked rows are all zero).
Tensor naive_softmax(const Tensor& x, bool causal, bool log_out) {
  const auto v = x.to_vector<double>();
  const int64_t n = x.size(-1), rows = x.numel() / n, tq = causal ? x.size(-2) : 1;
  std::vector<double> out(v.size(), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int64_t> keys;
    for (int64_t j = 0; j < n; ++j)
      if (!causal || j <= r % tq + n - tq) keys.push_back(j);
    if (keys.empty()) continue;
    double m = v[size_t(r * n + keys[0])];
    for (int64_t j : keys) m = std::max(m, v[size_t(r * n + j)]);
    double s = 0;
    for (int64_t j : keys) s += std::exp(v[size_t(r * n + j)] - m);
    for (int64_t j : keys) {
      const double xv = v[size_t(r * n + j)];
      out[size_t(r * n + j)] = log_out ? xv - m - std::log(s) : std::exp(xv - m) / s;
    }
  }
  return Tensor::from_vector<double>(out, x.shape());
}

// Naive backward by the full Jacobian of each row: dx_i = sum_j g_j * d y_j / d x_i.
Tensor naive_backward(const Tensor& y, const Tensor& g, bool log_out) {
  const auto yv = y.to_vector<double>(), gv = g.to_vector<double>();
  const int64_t n = y.size(-1), rows = y.numel() / n;
  std::vector<double> dx(yv.size(), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        const double yj = yv[size_t(r * n + j)], gj = gv[size_t(r * n + j)];
        // softmax: dy_j/dx_i = y_j (δij - y_i); log-softmax: dy_j/dx_i = δij - p_i with p = exp(y)
        const double jac = log_out ? (i == j) - std::exp(yv[size_t(r * n + i)])
                                   : yj * ((i == j) - yv[size_t(r * n + i)]);
        dx[size_t(r * n + i)] += gj * jac;
      }
  return Tensor::from_vector<double>(dx, y.shape());
}

TEST(OpsSoftmax, ForwardMatchesNaive) {
  uint64_t seed = 600;
  for (DType dt : {DType::f32, DType::f64})
    for (const Shape& s : {Shape{1}, Shape{5}, Shape{3, 7}, Shape{2, 3, 33}, Shape{4, 130}}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << shape_str(s));
      Tensor x = random_tensor(s, ++seed, -4, 4, dt);
      Tensor y = softmax(x), ly = log_softmax(x);
      EXPECT_EQ(y.dtype(), dt);
      PT_EXPECT_CLOSE(y, naive_softmax(x, false, false), tol_for(dt));
      PT_EXPECT_CLOSE(ly, naive_softmax(x, false, true), tol_for(dt));
    }
}

TEST(OpsSoftmax, NonContiguousInputs) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor base = random_tensor({6, 9, 5}, 611, -3, 3, dt);
    for (const Tensor& x : {base.transpose(1, 2), base.narrow(2, 1, 3), base.transpose(0, 2)}) {
      SCOPED_TRACE(x.describe());
      PT_EXPECT_CLOSE(softmax(x), naive_softmax(x, false, false), tol_for(dt));
      PT_EXPECT_CLOSE(log_softmax(x), naive_softmax(x, false, true), tol_for(dt));
      Tensor g = random_tensor(x.shape(), 612, -1, 1, dt).transpose(0, 1).contiguous().transpose(0, 1);
      PT_EXPECT_CLOSE(softmax_backward(softmax(x), g), naive_backward(softmax(x), g, false), tol_for(dt));
    }
  }
}

TEST(OpsSoftmax, CausalMaskIsExactAndRowsSumToOne) {
  uint64_t seed = 620;
  for (DType dt : {DType::f32, DType::f64})
    for (const Shape& s : {Shape{5, 5}, Shape{3, 7}, Shape{6, 4}, Shape{2, 3, 4, 4}, Shape{2, 1, 9}}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << shape_str(s));
      Tensor x = random_tensor(s, ++seed, -3, 3, dt);
      Tensor y = softmax(x, true);
      PT_EXPECT_CLOSE(y, naive_softmax(x, true, false), tol_for(dt));
      const auto v = y.to_vector<double>();
      const int64_t tk = s.back(), tq = s[s.size() - 2], rows = x.numel() / tk;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t q = r % tq, limit = q + tk - tq;  // keys j > limit are masked
        double total = 0;
        for (int64_t j = 0; j < tk; ++j) {
          const double p = v[size_t(r * tk + j)];
          if (j > limit) EXPECT_EQ(p, 0.0) << "row " << r << " key " << j;  // exactly zero
          else EXPECT_GT(p, 0.0);
          total += p;
        }
        if (limit >= 0) EXPECT_NEAR(total, 1.0, 1e-6) << "row " << r;
        else EXPECT_EQ(total, 0.0) << "row " << r << " sees no key";
      }
    }
}

TEST(OpsSoftmax, BackwardsMatchNaiveJacobian) {
  uint64_t seed = 640;
  for (DType dt : {DType::f32, DType::f64})
    for (const Shape& s : {Shape{1}, Shape{4, 9}, Shape{2, 3, 17}}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << shape_str(s));
      Tensor x = random_tensor(s, ++seed, -2, 2, dt), g = random_tensor(s, ++seed, -1, 1, dt);
      Tensor y = softmax(x), ly = log_softmax(x);
      PT_EXPECT_CLOSE(softmax_backward(y, g), naive_backward(y, g, false), tol_for(dt));
      PT_EXPECT_CLOSE(log_softmax_backward(ly, g), naive_backward(ly, g, true), tol_for(dt));
      Tensor yc = softmax(x.dim() >= 2 ? x : x.unsqueeze(0), true);
      Tensor gc = g.dim() >= 2 ? g : g.unsqueeze(0);
      PT_EXPECT_CLOSE(softmax_backward(yc, gc), naive_backward(yc, gc, false), tol_for(dt));  // masked: y = 0
    }
}

// d/dx of sum(g * f(x)) by central differences in f64: checks the backward formulas themselves.
TEST(OpsSoftmax, BackwardsMatchFiniteDifferences) {
  Tensor x = random_tensor({3, 6}, 660, -2, 2, DType::f64), g = random_tensor({3, 6}, 661, -1, 1, DType::f64);
  const auto gv = g.to_vector<double>();
  for (int variant = 0; variant < 3; ++variant) {  // softmax, log_softmax, causal softmax
    SCOPED_TRACE(variant);
    auto f = [&](const Tensor& t) { return variant == 1 ? log_softmax(t) : softmax(t, variant == 2); };
    auto objective = [&](const Tensor& t) {
      const auto y = f(t).to_vector<double>();
      double s = 0;
      for (size_t i = 0; i < y.size(); ++i) s += gv[i] * y[i];
      return s;
    };
    Tensor analytic = variant == 1 ? log_softmax_backward(f(x), g) : softmax_backward(f(x), g);
    PT_EXPECT_CLOSE(analytic, test::numeric_gradient(objective, x), (test::Tolerance{1e-6, 1e-8}));
  }
}

TEST(OpsSoftmax, ErrorsNameTheOp) {
  Tensor x = random_tensor({3, 4}, 670);
  expect_error([&] { softmax(random_tensor({4}, 671), true); }, "softmax");
  expect_error([&] { softmax(Tensor::full({}, 1.0)); }, "softmax");
  expect_error([&] { log_softmax(Tensor::zeros({3}, DType::i32)); }, "log_softmax");
  expect_error([&] { softmax_backward(x, random_tensor({4, 3}, 672)); }, "softmax_backward");
  expect_error([&] { log_softmax_backward(x, x.to(DType::f64)); }, "log_softmax_backward");
}

// ---- CUDA against the CPU ------------------------------------------------------------------------

// Forward (plain, causal, log) and both backwards on CUDA vs the CPU, for inputs drawn in dtype dt
// (the CPU runs on the same rounded values in f32, or f64).
void expect_cuda_matches_cpu(const Shape& s, DType dt, uint64_t seed, test::Tolerance tol) {
  Tensor x = random_tensor(s, seed, -4, 4, dt), g = random_tensor(s, seed + 1, -1, 1, dt);
  const DType ref_dt = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor xr = x.to(ref_dt), gr = g.to(ref_dt);
  Tensor xg = x.to(Device::cuda), gg = g.to(Device::cuda);
  SCOPED_TRACE(x.describe());
  PT_EXPECT_CLOSE(softmax(xg), softmax(xr), tol);
  PT_EXPECT_CLOSE(log_softmax(xg), log_softmax(xr), tol);
  if (x.dim() >= 2) {
    Tensor yc = softmax(xg, true);
    PT_EXPECT_CLOSE(yc, softmax(xr, true), tol);
    EXPECT_TRUE(test::tensors_equal(compare_scalar(yc, 0.0, CompareOp::eq), compare_scalar(softmax(xr, true), 0.0, CompareOp::eq)));
  }
  // Backwards from the same (rounded) y on both devices.
  Tensor y = softmax(xr).to(x.dtype()), ly = log_softmax(xr).to(x.dtype());
  PT_EXPECT_CLOSE(softmax_backward(y.to(Device::cuda), gg), softmax_backward(y.to(ref_dt), gr), tol);
  PT_EXPECT_CLOSE(log_softmax_backward(ly.to(Device::cuda), gg), log_softmax_backward(ly.to(ref_dt), gr), tol);
}

TEST(CudaSoftmax, MatchesCpu) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  uint64_t seed = 700;
  for (const Shape& s : {Shape{7}, Shape{3, 5, 33}, Shape{2, 4, 17, 17}, Shape{2, 6, 40}, Shape{3, 2048}, Shape{2, 50272}})
    expect_cuda_matches_cpu(s, DType::f32, seed += 2, test::kElementwiseF32);
  expect_cuda_matches_cpu({5, 9, 33}, DType::f64, seed += 2, test::kF64);
  for (DType dt : {DType::f16, DType::bf16})
    for (const Shape& s : {Shape{5, 37}, Shape{2, 3, 64, 64}, Shape{2, 5000}})
      expect_cuda_matches_cpu(s, dt, seed += 2, test::kHalf);
}

TEST(CudaSoftmax, NonContiguousInput) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  Tensor x = random_tensor({8, 33, 12}, 720, -3, 3);
  Tensor xg = x.to(Device::cuda);
  PT_EXPECT_CLOSE(softmax(xg.transpose(1, 2), true), softmax(x.transpose(1, 2), true), test::kElementwiseF32);
  PT_EXPECT_CLOSE(log_softmax(xg.narrow(1, 2, 20)), log_softmax(x.narrow(1, 2, 20)), test::kElementwiseF32);
}

}  // namespace
}  // namespace pt
