// layer_norm forward (y, mean, rstd) and backward (dx, dweight, dbias) against naive loops over
// std::vector<double> (the backward through the full per-row Jacobian) and central finite
// differences; the Cuda* suites compare CUDA with the CPU.
#include <cmath>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace pt {
namespace {

using test::expect_error;
using test::random_tensor;

constexpr double kEps = 1e-5;

struct NaiveLn {
  Tensor y, mean, rstd, dx, dw, db;
};

// Forward by the definition (biased variance); backward by dx_i = sum_j dy_j w_j dxhat_j/dx_i with
// dxhat_j/dx_i = rstd (δij - 1/C - xhat_i xhat_j / C).
NaiveLn naive_layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& dy, double eps) {
  const auto xv = x.to_vector<double>(), wv = w.to_vector<double>(), bv = b.to_vector<double>();
  const auto gv = dy.to_vector<double>();
  const int64_t c = x.size(-1), rows = x.numel() / c;
  std::vector<double> y(xv.size()), dx(xv.size(), 0.0);
  std::vector<double> mean(static_cast<size_t>(rows)), rstd(static_cast<size_t>(rows));
  std::vector<double> dw(size_t(c), 0.0), db(size_t(c), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const double* xr = &xv[size_t(r * c)];
    double m = 0, var = 0;
    for (int64_t j = 0; j < c; ++j) m += xr[j] / double(c);
    for (int64_t j = 0; j < c; ++j) var += (xr[j] - m) * (xr[j] - m) / double(c);
    const double rs = 1.0 / std::sqrt(var + eps);
    mean[size_t(r)] = m;
    rstd[size_t(r)] = rs;
    std::vector<double> xhat(static_cast<size_t>(c));
    for (int64_t j = 0; j < c; ++j) {
      xhat[size_t(j)] = (xr[j] - m) * rs;
      y[size_t(r * c + j)] = xhat[size_t(j)] * wv[size_t(j)] + bv[size_t(j)];
      dw[size_t(j)] += gv[size_t(r * c + j)] * xhat[size_t(j)];
      db[size_t(j)] += gv[size_t(r * c + j)];
    }
    for (int64_t i = 0; i < c; ++i)
      for (int64_t j = 0; j < c; ++j) {
        const double jac = rs * ((i == j) - 1.0 / double(c) - xhat[size_t(i)] * xhat[size_t(j)] / double(c));
        dx[size_t(r * c + i)] += gv[size_t(r * c + j)] * wv[size_t(j)] * jac;
      }
  }
  return {Tensor::from_vector<double>(y, x.shape()), Tensor::from_vector<double>(mean, {rows}),
          Tensor::from_vector<double>(rstd, {rows}),  Tensor::from_vector<double>(dx, x.shape()),
          Tensor::from_vector<double>(dw, {c}),       Tensor::from_vector<double>(db, {c})};
}

void expect_matches_naive(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& dy) {
  SCOPED_TRACE(x.describe());
  const bool f64 = x.dtype() == DType::f64;
  const test::Tolerance fwd = f64 ? test::kF64 : test::kElementwiseF32;
  const test::Tolerance bwd = f64 ? test::kF64 : test::kReductionF32;  // f32 saved stats, cancellation in dx
  NaiveLn want = naive_layer_norm(x, w, b, dy, kEps);
  LayerNormOut out = layer_norm(x, w, b, kEps);
  EXPECT_EQ(out.mean.dtype(), f64 ? DType::f64 : DType::f32);
  PT_EXPECT_CLOSE(out.y, want.y, fwd);
  PT_EXPECT_CLOSE(out.mean, want.mean, fwd);
  PT_EXPECT_CLOSE(out.rstd, want.rstd, fwd);
  LayerNormGrads g = layer_norm_backward(dy, x, w, out.mean, out.rstd);
  PT_EXPECT_CLOSE(g.dx, want.dx, bwd);
  PT_EXPECT_CLOSE(g.dweight, want.dw, bwd);
  PT_EXPECT_CLOSE(g.dbias, want.db, bwd);
}

TEST(OpsLayerNorm, ForwardAndBackwardMatchNaive) {
  uint64_t seed = 800;
  for (DType dt : {DType::f32, DType::f64})
    for (const Shape& s : {Shape{1, 5}, Shape{3, 7}, Shape{2, 3, 64}, Shape{9}, Shape{4, 1}}) {
      const int64_t c = s.back();
      // An offset mean (x in [2, 5]) exercises the two-pass variance.
      seed += 4;
      expect_matches_naive(random_tensor(s, seed, 2, 5, dt), random_tensor({c}, seed + 1, 0.5, 1.5, dt),
                           random_tensor({c}, seed + 2, -1, 1, dt), random_tensor(s, seed + 3, -1, 1, dt));
    }
}

TEST(OpsLayerNorm, NonContiguousInputs) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor base = random_tensor({6, 10, 4}, 820, -2, 2, dt);
    Tensor w = random_tensor({12}, 821, 0.5, 1.5, dt).narrow(0, 2, 6);    // offset view
    Tensor b = random_tensor({6, 2}, 822, -1, 1, dt).select(1, 1);        // strided view
    Tensor x = base.transpose(1, 2).narrow(2, 2, 6);                      // [6, 4, 6], strided last dim
    Tensor dy = random_tensor({6, 6, 4}, 823, -1, 1, dt).transpose(1, 2); // [6, 4, 6]
    expect_matches_naive(x, w, b, dy);
  }
}

// d/d(x, w, b) of sum(dy * y) by central differences in f64: checks the backward formulas themselves.
TEST(OpsLayerNorm, BackwardMatchesFiniteDifferences) {
  const Shape s{3, 6};
  Tensor x = random_tensor(s, 830, -2, 2, DType::f64), w = random_tensor({6}, 831, 0.5, 1.5, DType::f64);
  Tensor b = random_tensor({6}, 832, -1, 1, DType::f64), dy = random_tensor(s, 833, -1, 1, DType::f64);
  const auto gv = dy.to_vector<double>();
  auto objective = [&](const Tensor& xx, const Tensor& ww, const Tensor& bb) {
    const auto y = layer_norm(xx, ww, bb, kEps).y.to_vector<double>();
    double acc = 0;
    for (size_t i = 0; i < y.size(); ++i) acc += gv[i] * y[i];
    return acc;
  };
  // Numeric gradient with respect to argument `which` (0 = x, 1 = w, 2 = b).
  auto numeric = [&](int which) {
    Tensor args[3] = {x, w, b};
    auto v = args[which].to_vector<double>();
    std::vector<double> out(v.size());
    const double h = 1e-6;
    for (size_t i = 0; i < v.size(); ++i) {
      auto vp = v, vm = v;
      vp[i] += h;
      vm[i] -= h;
      Tensor p[3] = {x, w, b}, m[3] = {x, w, b};
      p[which] = Tensor::from_vector<double>(vp, args[which].shape());
      m[which] = Tensor::from_vector<double>(vm, args[which].shape());
      out[i] = (objective(p[0], p[1], p[2]) - objective(m[0], m[1], m[2])) / (2 * h);
    }
    return Tensor::from_vector<double>(out, args[which].shape());
  };
  LayerNormOut fwd = layer_norm(x, w, b, kEps);
  LayerNormGrads g = layer_norm_backward(dy, x, w, fwd.mean, fwd.rstd);
  const test::Tolerance tol{1e-6, 1e-8};
  PT_EXPECT_CLOSE(g.dx, numeric(0), tol);
  PT_EXPECT_CLOSE(g.dweight, numeric(1), tol);
  PT_EXPECT_CLOSE(g.dbias, numeric(2), tol);
}

TEST(OpsLayerNorm, ErrorsNameTheOpAndShapes) {
  Tensor x = random_tensor({2, 4}, 840), w4 = random_tensor({4}, 841), b4 = random_tensor({4}, 842);
  expect_error([&] { layer_norm(x, random_tensor({5}, 843), b4, kEps); },
               "layer_norm: weight shape [5] does not match the last dim of x f32[2, 4] cpu");
  expect_error([&] { layer_norm(x, w4, random_tensor({2, 2}, 844), kEps); }, "layer_norm: bias shape [2, 2]");
  expect_error([&] { layer_norm(x, w4.to(DType::f64), b4, kEps); }, "layer_norm");
  expect_error([&] { layer_norm(x, w4, b4, -1.0); }, "layer_norm");
  expect_error([&] { layer_norm(x, Tensor(), b4, kEps); }, "layer_norm");
  LayerNormOut fwd = layer_norm(x, w4, b4, kEps);
  expect_error([&] { layer_norm_backward(random_tensor({2, 5}, 845), x, w4, fwd.mean, fwd.rstd); },
               "layer_norm_backward");
  expect_error([&] { layer_norm_backward(x, x, w4, random_tensor({3}, 846), fwd.rstd); }, "layer_norm_backward: mean");
  expect_error([&] { layer_norm_backward(x, x, w4, fwd.mean, fwd.rstd.to(DType::f64)); }, "layer_norm_backward");
}

// ---- CUDA against the CPU ------------------------------------------------------------------------

// x, w, b, dy already in the test dtype; the CPU runs on the same values in f32 (f64 for f64).
void expect_cuda_matches_cpu(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& dy, test::Tolerance fwd_tol,
                             test::Tolerance bwd_tol) {
  SCOPED_TRACE(x.describe());
  const DType ref = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  LayerNormOut want = layer_norm(x.to(ref), w.to(ref), b.to(ref), kEps);
  LayerNormOut got = layer_norm(x.to(Device::cuda), w.to(Device::cuda), b.to(Device::cuda), kEps);
  EXPECT_TRUE(got.y.is_cuda());
  EXPECT_EQ(got.y.dtype(), x.dtype());
  EXPECT_EQ(got.mean.dtype(), ref);
  PT_EXPECT_CLOSE(got.y, want.y, fwd_tol);
  PT_EXPECT_CLOSE(got.mean, want.mean, fwd_tol);
  PT_EXPECT_CLOSE(got.rstd, want.rstd, bwd_tol);
  LayerNormGrads gw = layer_norm_backward(dy.to(ref), x.to(ref), w.to(ref), want.mean, want.rstd);
  LayerNormGrads gg = layer_norm_backward(dy.to(Device::cuda), x.to(Device::cuda), w.to(Device::cuda), got.mean, got.rstd);
  PT_EXPECT_CLOSE(gg.dx, gw.dx, bwd_tol);
  PT_EXPECT_CLOSE(gg.dweight, gw.dweight, bwd_tol);
  PT_EXPECT_CLOSE(gg.dbias, gw.dbias, bwd_tol);
}

TEST(CudaLayerNorm, MatchesCpu) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  uint64_t seed = 900;
  auto inputs = [&](const Shape& s, DType dt, auto&& check) {
    const int64_t c = s.back();
    seed += 4;
    check(random_tensor(s, seed, -2, 2, dt), random_tensor({c}, seed + 1, 0.5, 1.5, dt),
          random_tensor({c}, seed + 2, -1, 1, dt), random_tensor(s, seed + 3, -1, 1, dt));
  };
  for (const Shape& s : {Shape{1, 5}, Shape{3, 7, 33}, Shape{64, 768}, Shape{4096, 96}, Shape{2, 5000}}) {
    inputs(s, DType::f32, [](const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& dy) {
      expect_cuda_matches_cpu(x, w, b, dy, test::kElementwiseF32, test::kReductionF32);
    });
  }
  inputs({17, 65}, DType::f64, [](const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& dy) {
    expect_cuda_matches_cpu(x, w, b, dy, test::kF64, test::kF64);
  });
  for (DType dt : {DType::f16, DType::bf16})
    for (const Shape& s : {Shape{3, 37}, Shape{2, 16, 256}})
      inputs(s, dt, [](const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& dy) {
        expect_cuda_matches_cpu(x, w, b, dy, test::kHalf, test::kHalf);
      });
}

TEST(CudaLayerNorm, NonContiguousInputs) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  // Views made on the device (Tensor::to would hand over a contiguous copy).
  Tensor base = random_tensor({6, 40, 8}, 950, -2, 2), wb = random_tensor({2, 40}, 951, 0.5, 1.5);
  Tensor b = random_tensor({40}, 952);
  Tensor x = base.transpose(1, 2), w = wb.select(0, 1);  // [6, 8, 40] strided; an offset row
  Tensor xg = base.to(Device::cuda).transpose(1, 2), wg = wb.to(Device::cuda).select(0, 1);
  LayerNormOut want = layer_norm(x, w, b, kEps);
  LayerNormOut got = layer_norm(xg, wg, b.to(Device::cuda), kEps);
  PT_EXPECT_CLOSE(got.y, want.y, test::kElementwiseF32);
  Tensor dy = random_tensor({6, 40, 8}, 953).transpose(1, 2);
  LayerNormGrads gw = layer_norm_backward(dy, x, w, want.mean, want.rstd);
  LayerNormGrads gg = layer_norm_backward(dy.contiguous().to(Device::cuda), xg, wg, got.mean, got.rstd);
  PT_EXPECT_CLOSE(gg.dx, gw.dx, test::kReductionF32);
  PT_EXPECT_CLOSE(gg.dweight, gw.dweight, test::kReductionF32);
}

}  // namespace
}  // namespace pt
