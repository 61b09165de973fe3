// Reductions (sum, mean, max, argmax, sum_all, mean_all, sum_to, global_norm) against naive loops over
// std::vector<double>, on the CPU; the Cuda* suites compare CUDA with the CPU.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace pt {
namespace {

using test::expect_error;
using test::random_tensor;

enum class Kind { sum, mean, max, argmax };

// Reduces x over `dim` by plain loops over its row-major values (as f64; argmax as indices).
Tensor naive_reduce(const Tensor& x, int64_t dim, bool keepdim, Kind kind) {
  const auto v = x.to_vector<double>();
  const int64_t d = dim < 0 ? dim + x.dim() : dim;
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < d; ++i) outer *= x.size(i);
  for (int64_t i = d + 1; i < x.dim(); ++i) inner *= x.size(i);
  const int64_t n = x.size(d);
  std::vector<double> out;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t k) { return v[size_t((o * n + k) * inner + i)]; };
      double acc = 0, best = at(0);
      int64_t best_k = 0;
      for (int64_t k = 0; k < n; ++k) {
        acc += at(k);
        if (at(k) > best) { best = at(k); best_k = k; }
      }
      out.push_back(kind == Kind::sum ? acc : kind == Kind::mean ? acc / double(n) : kind == Kind::max ? best : double(best_k));
    }
  Shape s;
  for (int64_t i = 0; i < x.dim(); ++i)
    if (i != d) s.push_back(x.size(i));
    else if (keepdim) s.push_back(1);
  return Tensor::from_vector<double>(out, s);
}

test::Tolerance tol_for(DType dt) { return dt == DType::f64 ? test::kF64 : test::kElementwiseF32; }

Tensor run(Kind kind, const Tensor& x, int64_t dim, bool keepdim) {
  switch (kind) {
    case Kind::sum: return sum(x, dim, keepdim);
    case Kind::mean: return mean(x, dim, keepdim);
    case Kind::max: return max(x, dim, keepdim);
    case Kind::argmax: return argmax(x, dim, keepdim);
  }
  return {};
}

void expect_matches_naive(const Tensor& x, uint64_t trace_seed) {
  for (int64_t dim = -x.dim(); dim < x.dim(); ++dim)
    for (bool keepdim : {false, true})
      for (Kind kind : {Kind::sum, Kind::mean, Kind::max, Kind::argmax}) {
        SCOPED_TRACE(::testing::Message() << x.describe() << " seed " << trace_seed << " dim=" << dim << " keepdim="
                                          << keepdim << " kind=" << int(kind));
        Tensor got = run(kind, x, dim, keepdim);
        Tensor want = naive_reduce(x, dim, keepdim, kind);
        EXPECT_EQ(got.dtype(), kind == Kind::argmax ? DType::i64 : x.dtype());
        if (kind == Kind::argmax || kind == Kind::max) EXPECT_TRUE(test::tensors_equal(got, want));
        else PT_EXPECT_CLOSE(got, want, tol_for(x.dtype()));
      }
}

TEST(OpsReduce, SumMeanMaxArgmaxMatchNaiveOverEveryDim) {
  uint64_t seed = 100;
  for (DType dt : {DType::f32, DType::f64})
    for (const Shape& s : {Shape{7}, Shape{3, 5}, Shape{4, 1, 6}, Shape{2, 3, 5, 7}}) {
      ++seed;
      expect_matches_naive(random_tensor(s, seed, -2, 2, dt), seed);
    }
}

TEST(OpsReduce, NonContiguousInputs) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor base = random_tensor({6, 9, 4}, 11, -1, 1, dt);
    expect_matches_naive(base.transpose(0, 2), 11);          // [4, 9, 6], permuted strides
    expect_matches_naive(base.narrow(1, 2, 5), 11);          // [6, 5, 4], gaps between rows
    expect_matches_naive(base.select(2, 1).t(), 11);         // [9, 6], stride 4 innermost
  }
}

TEST(OpsReduce, ArgmaxTakesFirstOfTiesAndMaxPropagatesNaN) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor x = Tensor::from_vector<double>({1, 3, 3, 0, /**/ 2, nan, 5, nan, /**/ -1, -1, -1, -1}, {3, 4});
  EXPECT_EQ(argmax(x, 1).to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 0}));
  const auto m = max(x, 1).to_vector<double>();
  EXPECT_EQ(m[0], 3.0);
  EXPECT_TRUE(std::isnan(m[1]));
  EXPECT_EQ(m[2], -1.0);
  EXPECT_EQ(argmax(x.t(), 0).to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 0}));  // column path
}

TEST(OpsReduce, SumAllAndMeanAllAreZeroDim) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = random_tensor({5, 7, 3}, 21, -1, 1, dt).transpose(0, 1);
    const auto v = x.to_vector<double>();
    double s = 0;
    for (double e : v) s += e;
    Tensor got_s = sum_all(x), got_m = mean_all(x);
    EXPECT_EQ(got_s.dim(), 0);
    EXPECT_EQ(got_m.dtype(), dt);
    EXPECT_NEAR(got_s.item(), s, 1e-5 * std::abs(s) + 1e-6);
    EXPECT_NEAR(got_m.item(), s / double(v.size()), 1e-6);
  }
}

TEST(OpsReduce, EmptyAxisAndZeroDimInputs) {
  Tensor e = Tensor::zeros({3, 0});
  EXPECT_EQ(sum(e, 1).to_vector<double>(), (std::vector<double>{0, 0, 0}));
  EXPECT_TRUE(std::isnan(mean(e, 1).to_vector<double>()[0]));
  EXPECT_EQ(sum(e, 0).numel(), 0);
  Tensor z = Tensor::full({}, 2.5);
  EXPECT_EQ(sum(z, 0).item(), 2.5);
  EXPECT_EQ(sum(z, 0).dim(), 0);
  EXPECT_EQ(argmax(z, -1).item(), 0.0);
}

// sum_to against explicit index mapping: every element of x lands in the broadcast-source cell.
TEST(OpsReduce, SumToMatchesNaive) {
  const Shape xs{2, 3, 4};
  Tensor x = random_tensor(xs, 31, -1, 1, DType::f64);
  const auto v = x.to_vector<double>();
  for (const Shape& target : {Shape{3, 1}, Shape{4}, Shape{1, 1, 4}, Shape{}, Shape{2, 1, 4}, Shape{1}}) {
    SCOPED_TRACE(shape_str(target));
    const size_t lead = xs.size() - target.size();
    const Strides ts = contiguous_strides(target);
    std::vector<double> want(size_t(shape_numel(target)), 0.0);
    for (int64_t a = 0; a < 2; ++a)
      for (int64_t b = 0; b < 3; ++b)
        for (int64_t c = 0; c < 4; ++c) {
          const int64_t idx[3] = {a, b, c};
          int64_t off = 0;
          for (size_t k = 0; k < target.size(); ++k) off += (target[k] == 1 ? 0 : idx[lead + k]) * ts[k];
          want[size_t(off)] += v[size_t((a * 3 + b) * 4 + c)];
        }
    Tensor got = sum_to(x, target);
    EXPECT_EQ(got.shape(), target);
    PT_EXPECT_CLOSE(got, Tensor::from_vector<double>(want, target), test::kF64);
  }
  EXPECT_TRUE(test::tensors_equal(sum_to(x, xs), x));
}

TEST(OpsReduce, GlobalNormMatchesNaive) {
  std::vector<Tensor> xs{random_tensor({3, 4}, 41), random_tensor({7}, 42).narrow(0, 1, 5), random_tensor({2, 2, 2}, 43)};
  double ss = 0;
  for (const Tensor& t : xs)
    for (double e : t.to_vector<double>()) ss += e * e;
  Tensor g = global_norm(xs);
  EXPECT_EQ(g.dim(), 0);
  EXPECT_EQ(g.dtype(), DType::f32);
  EXPECT_NEAR(g.item(), std::sqrt(ss), 1e-6 * std::sqrt(ss));
  xs.push_back(random_tensor({5}, 44, -1, 1, DType::f64));
  for (double e : xs.back().to_vector<double>()) ss += e * e;
  Tensor g64 = global_norm(xs);
  EXPECT_EQ(g64.dtype(), DType::f64);
  EXPECT_NEAR(g64.item(), std::sqrt(ss), 1e-6);
  EXPECT_EQ(global_norm({}).item(), 0.0);
}

TEST(OpsReduce, ErrorsNameTheOp) {
  Tensor x = random_tensor({2, 3}, 51);
  expect_error([&] { sum(x, 2); }, "sum");
  expect_error([&] { mean(x, -3); }, "mean");
  expect_error([&] { sum(Tensor::zeros({3}, DType::i64), 0); }, "sum");
  expect_error([&] { max(Tensor::zeros({2, 0}), 1); }, "max");
  expect_error([&] { argmax(Tensor::zeros({2, 0}), 1); }, "argmax");
  expect_error([&] { sum_to(x, Shape{4}); }, "sum_to");
  expect_error([&] { sum_to(x, Shape{1, 2, 3}); }, "sum_to");
  expect_error([&] { global_norm({x, Tensor()}); }, "global_norm");
}

// ---- CUDA against the CPU ------------------------------------------------------------------------

// Every kind over every dim of x, CUDA against the CPU (inputs already rounded to x's dtype).
void expect_cuda_matches_cpu(const Tensor& x_cpu, test::Tolerance tol) {
  Tensor x_ref = x_cpu.dtype() == DType::f64 ? x_cpu : x_cpu.to(DType::f32);
  Tensor x_gpu = x_cpu.to(Device::cuda);
  for (int64_t dim = 0; dim < x_cpu.dim(); ++dim)
    for (Kind kind : {Kind::sum, Kind::mean, Kind::max, Kind::argmax}) {
      SCOPED_TRACE(::testing::Message() << x_cpu.describe() << " dim=" << dim << " kind=" << int(kind));
      Tensor got = run(kind, x_gpu, dim, dim % 2 == 0);
      Tensor want = run(kind, x_ref, dim, dim % 2 == 0);
      EXPECT_TRUE(got.is_cuda());
      EXPECT_EQ(got.dtype(), kind == Kind::argmax ? DType::i64 : x_cpu.dtype());
      if (kind == Kind::argmax) EXPECT_TRUE(test::tensors_equal(got, want));
      else PT_EXPECT_CLOSE(got, want, kind == Kind::max ? test::kElementwiseF32 : tol);
    }
}

TEST(CudaReduce, MatchesCpu) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  uint64_t seed = 300;
  // Small, odd, and long axes (the long ones take the split + finish path).
  for (const Shape& s : {Shape{7}, Shape{3, 5, 33}, Shape{2, 70000}, Shape{50000, 3}, Shape{1, 300000}, Shape{129, 257}})
    expect_cuda_matches_cpu(random_tensor(s, ++seed, -1, 1, DType::f32), test::kReductionF32);
  expect_cuda_matches_cpu(random_tensor({4, 9, 33}, ++seed, -1, 1, DType::f64), test::kF64);
  for (DType dt : {DType::f16, DType::bf16})
    for (const Shape& s : {Shape{5, 37}, Shape{3, 4000}, Shape{4000, 6}})
      expect_cuda_matches_cpu(random_tensor(s, ++seed, -1, 1, dt), test::kHalf);
}

TEST(CudaReduce, NonContiguousAllReductionsAndSumTo) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  Tensor x = random_tensor({64, 48, 5}, 401);
  Tensor xg = x.to(Device::cuda);
  PT_EXPECT_CLOSE(sum(xg.transpose(0, 2), 1), sum(x.transpose(0, 2), 1), test::kReductionF32);
  PT_EXPECT_CLOSE(sum_all(xg.narrow(1, 3, 20)), sum_all(x.narrow(1, 3, 20)), test::kReductionF32);
  PT_EXPECT_CLOSE(mean_all(xg), mean_all(x), test::kReductionF32);
  for (const Shape& target : {Shape{48, 1}, Shape{5}, Shape{64, 1, 5}, Shape{}}) {
    SCOPED_TRACE(shape_str(target));
    PT_EXPECT_CLOSE(sum_to(xg, target), sum_to(x, target), test::kReductionF32);
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor t = Tensor::from_vector<double>({1, 3, 3, 0, 2, nan, 5, nan}, {2, 4}).to(DType::f32);
  EXPECT_TRUE(test::tensors_equal(argmax(t.to(Device::cuda), 1), argmax(t, 1)));
  EXPECT_TRUE(test::tensors_equal(max(t.to(Device::cuda), 1), max(t, 1)));
  EXPECT_TRUE(test::tensors_equal(argmax(t.t().to(Device::cuda), 0), argmax(t.t(), 0)));
}

TEST(CudaReduce, GlobalNormMatchesCpu) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  std::vector<Tensor> cpu{random_tensor({300, 70}, 501), random_tensor({1000001}, 502), random_tensor({7}, 503)};
  std::vector<Tensor> gpu;
  for (const Tensor& t : cpu) gpu.push_back(t.to(Device::cuda));
  Tensor g = global_norm(gpu);
  EXPECT_TRUE(g.is_cuda());
  EXPECT_EQ(g.dtype(), DType::f32);
  PT_EXPECT_CLOSE(g, global_norm(cpu), test::kReductionF32);
  std::vector<Tensor> half{gpu[0].to(DType::bf16), gpu[1].to(DType::f16)};
  std::vector<Tensor> half_ref{half[0].to(Device::cpu, DType::f32), half[1].to(Device::cpu, DType::f32)};
  PT_EXPECT_CLOSE(global_norm(half), global_norm(half_ref), test::kReductionF32);
  gpu.push_back(random_tensor({5}, 504, -1, 1, DType::f64, Device::cuda));
  cpu.push_back(gpu.back().to(Device::cpu));
  EXPECT_EQ(global_norm(gpu).dtype(), DType::f64);
  PT_EXPECT_CLOSE(global_norm(gpu), global_norm(cpu), test::kF64);
}

}  // namespace
}  // namespace pt
