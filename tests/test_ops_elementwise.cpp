// Element-wise ops against naive double-precision loops (with explicit broadcasting index math),
// plus CUDA parity on poisoned outputs.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "tensor/ops.h"
#include "tests/test_util.h"

namespace pt {
namespace {

using test::random_tensor;

// Naive broadcast: the value of `t` (row-major values v, shape s) at output multi-index of shape out.
double bcast_at(const std::vector<double>& v, const Shape& s, const Shape& out, int64_t linear) {
  std::vector<int64_t> idx(out.size());
  for (int64_t d = int64_t(out.size()) - 1; d >= 0; --d) { idx[d] = linear % out[d]; linear /= out[d]; }
  int64_t off = 0, mul = 1;
  for (int64_t d = int64_t(s.size()) - 1; d >= 0; --d) {
    int64_t od = d + int64_t(out.size() - s.size());
    off += (s[d] == 1 ? 0 : idx[od]) * mul;
    mul *= s[d];
  }
  return v[size_t(off)];
}

Tensor naive_binary(const Tensor& a, const Tensor& b, const std::function<double(double, double)>& f) {
  Shape out = broadcast_shapes(a.shape(), b.shape(), "test");
  auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  std::vector<double> r(size_t(shape_numel(out)));
  for (int64_t i = 0; i < int64_t(r.size()); ++i)
    r[size_t(i)] = f(bcast_at(av, a.shape(), out, i), bcast_at(bv, b.shape(), out, i));
  return Tensor::from_vector(r, out).to(a.dtype());
}

struct BinaryCase { BinaryOp op; std::function<double(double, double)> f; };
std::vector<BinaryCase> binary_cases() {
  return {{BinaryOp::add, [](double x, double y) { return x + y; }},
          {BinaryOp::sub, [](double x, double y) { return x - y; }},
          {BinaryOp::mul, [](double x, double y) { return x * y; }},
          {BinaryOp::div, [](double x, double y) { return x / y; }},
          {BinaryOp::maximum, [](double x, double y) { return std::max(x, y); }},
          {BinaryOp::minimum, [](double x, double y) { return std::min(x, y); }}};
}

TEST(Elementwise, BinaryMatchesNaiveWithBroadcastingAndViews) {
  std::vector<std::pair<Shape, Shape>> shapes = {{{7}, {7}}, {{3, 1, 5}, {4, 1}}, {{2, 3, 4}, {4}}, {{1}, {5, 2}}, {{}, {3}}};
  for (DType dt : {DType::f32, DType::f64}) {
    uint64_t seed = 10;
    for (auto& [sa, sb] : shapes) {
      Tensor a = random_tensor(sa, seed++, 0.5, 2.0, dt), b = random_tensor(sb, seed++, 0.5, 2.0, dt);
      for (auto& c : binary_cases())
        PT_EXPECT_CLOSE(binary(a, b, c.op), naive_binary(a, b, c.f), dt == DType::f32 ? test::kElementwiseF32 : test::kF64);
    }
    // Non-contiguous operands.
    Tensor a = random_tensor({6, 5}, 99, -1, 1, dt).t(), b = random_tensor({5, 9}, 98, -1, 1, dt).narrow(1, 2, 6);
    PT_EXPECT_CLOSE(mul(a, b), naive_binary(a.contiguous(), b.contiguous(), [](double x, double y) { return x * y; }),
                    test::kElementwiseF32);
  }
}

TEST(Elementwise, InPlaceIntoAliasedOutput) {
  Tensor a = random_tensor({4, 3}, 1), b = random_tensor({3}, 2);
  Tensor expected = naive_binary(a, b, [](double x, double y) { return x + y; });
  binary_(a, a, b, BinaryOp::add);
  PT_EXPECT_CLOSE(a, expected, test::kElementwiseF32);
  EXPECT_THROW(binary_(b, a, b, BinaryOp::add), Error);  // result [4,3] does not fit [3]
}

TEST(Elementwise, UnaryMatchesNaive) {
  Tensor x = random_tensor({5, 7}, 3, 0.1, 3.0, DType::f64);
  auto v = x.to_vector<double>();
  struct U { UnaryOp op; double s; std::function<double(double)> f; };
  std::vector<U> cases = {{UnaryOp::neg, 0, [](double t) { return -t; }},
                          {UnaryOp::exp, 0, [](double t) { return std::exp(t); }},
                          {UnaryOp::log, 0, [](double t) { return std::log(t); }},
                          {UnaryOp::sqrt, 0, [](double t) { return std::sqrt(t); }},
                          {UnaryOp::rsqrt, 0, [](double t) { return 1 / std::sqrt(t); }},
                          {UnaryOp::square, 0, [](double t) { return t * t; }},
                          {UnaryOp::add_scalar, 1.5, [](double t) { return t + 1.5; }},
                          {UnaryOp::mul_scalar, -0.25, [](double t) { return t * -0.25; }},
                          {UnaryOp::pow_scalar, 1.7, [](double t) { return std::pow(t, 1.7); }}};
  for (auto& c : cases) {
    std::vector<double> r(v.size());
    for (size_t i = 0; i < v.size(); ++i) r[i] = c.f(v[i]);
    PT_EXPECT_CLOSE(unary(x, c.op, c.s), Tensor::from_vector(r, x.shape()), test::kF64);
    PT_EXPECT_CLOSE(unary(x.to(DType::f32), c.op, c.s), Tensor::from_vector(r, x.shape()), test::kElementwiseF32);
  }
  Tensor y = random_tensor({50}, 4, -1, 1);
  auto yv = y.to_vector<double>();
  auto rv = relu(y).to_vector<double>();
  auto av = abs(y).to_vector<double>();
  for (size_t i = 0; i < yv.size(); ++i) {
    EXPECT_EQ(rv[i], yv[i] > 0 ? yv[i] : 0.0);
    EXPECT_EQ(av[i], std::abs(yv[i]));
  }
  Tensor g = random_tensor({50}, 5);
  auto gv = g.to_vector<double>();
  auto rb = relu_backward(g, y).to_vector<double>();
  for (size_t i = 0; i < yv.size(); ++i) EXPECT_EQ(rb[i], yv[i] > 0 ? gv[i] : 0.0);
}

TEST(Elementwise, CompareWhereMaskAndDropout) {
  Tensor a = random_tensor({4, 6}, 6), b = random_tensor({6}, 7);
  auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  auto gt = compare(a, b, CompareOp::gt).to_vector<int64_t>();
  auto le0 = compare_scalar(a, 0.0, CompareOp::le).to_vector<int64_t>();
  for (size_t i = 0; i < av.size(); ++i) {
    EXPECT_EQ(gt[i], av[i] > bv[i % 6] ? 1 : 0);
    EXPECT_EQ(le0[i], av[i] <= 0 ? 1 : 0);
  }
  Tensor keep = compare_scalar(a, 0.0, CompareOp::gt);
  auto masked = apply_mask(a, keep).to_vector<double>();
  auto filled = masked_fill(a, keep, -9.0).to_vector<double>();
  auto w = where(keep, a, b).to_vector<double>();
  for (size_t i = 0; i < av.size(); ++i) {
    EXPECT_EQ(masked[i], av[i] > 0 ? av[i] : 0.0);
    EXPECT_EQ(filled[i], av[i] > 0 ? -9.0 : av[i]);
    EXPECT_EQ(w[i], av[i] > 0 ? av[i] : bv[i % 6]);
  }
  // Masking is exact even for NaN/inf payloads: a pruned weight is 0.0, not NaN.
  Tensor bad = Tensor::from_vector<float>({NAN, INFINITY, 1.0f}, {3});
  Tensor k = Tensor::from_vector<uint8_t>({0, 0, 1}, {3});
  EXPECT_EQ(apply_mask(bad, k).to_vector<double>(), (std::vector<double>{0.0, 0.0, 1.0}));
  // Dropout: kept fraction near 1-p, kept values exactly 1/(1-p), seeded.
  Generator g1(3), g2(3);
  auto m = dropout_mask({20000}, 0.25, g1, DType::f32, Device::cpu).to_vector<double>();
  size_t kept = 0;
  for (double x : m) {
    EXPECT_TRUE(x == 0.0 || std::abs(x - 1.0 / 0.75) < 1e-6);
    kept += x != 0.0;
  }
  EXPECT_NEAR(double(kept) / double(m.size()), 0.75, 0.02);
  EXPECT_EQ(m, dropout_mask({20000}, 0.25, g2, DType::f32, Device::cpu).to_vector<double>());
  EXPECT_THROW(dropout_mask({2}, 1.0, g1, DType::f32, Device::cpu), Error);
}

TEST(Elementwise, CatAlongDims) {
  Tensor a = random_tensor({2, 3}, 8), b = random_tensor({2, 4}, 9);
  Tensor c = cat({a, b}, 1);
  ASSERT_EQ(c.shape(), (Shape{2, 7}));
  auto cv = c.to_vector<double>(), av = a.to_vector<double>(), bv = b.to_vector<double>();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 7; ++j)
      EXPECT_EQ(cv[size_t(i * 7 + j)], j < 3 ? av[size_t(i * 3 + j)] : bv[size_t(i * 4 + j - 3)]);
  EXPECT_THROW(cat({a, random_tensor({3, 3}, 1)}, 1), Error);
}

TEST(Elementwise, ClearErrorsForBadUse) {
  Tensor a = random_tensor({2, 3}, 1), b = random_tensor({4}, 2);
  try {
    add(a, b);
    FAIL();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("add"), std::string::npos) << m;
    EXPECT_NE(m.find("[2, 3]"), std::string::npos) << m;
    EXPECT_NE(m.find("[4]"), std::string::npos) << m;
  }
  try {
    mul(a, a.to(DType::f64));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dtypes differ"), std::string::npos) << e.what();
  }
  try {
    exp(a.to(DType::bf16));  // bf16 compute is CUDA-only
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bf16"), std::string::npos) << e.what();
  }
  EXPECT_THROW(add(a, Tensor()), Error);
  EXPECT_THROW(where(a, a, a), Error);  // cond must be u8
}

TEST(CudaElementwise, MatchesCpu) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  Tensor a = random_tensor({3, 1, 5}, 21, 0.5, 2.0), b = random_tensor({4, 1}, 22, 0.5, 2.0);
  Tensor ga = a.to(Device::cuda), gb = b.to(Device::cuda);
  for (auto& c : binary_cases()) PT_EXPECT_CLOSE(binary(ga, gb, c.op), binary(a, b, c.op), test::kElementwiseF32);
  for (UnaryOp op : {UnaryOp::neg, UnaryOp::relu, UnaryOp::exp, UnaryOp::log, UnaryOp::sqrt, UnaryOp::rsqrt,
                     UnaryOp::abs, UnaryOp::square, UnaryOp::add_scalar, UnaryOp::mul_scalar, UnaryOp::pow_scalar})
    PT_EXPECT_CLOSE(unary(ga.t(), op, 1.3), unary(a.t(), op, 1.3), test::kElementwiseF32);
  // Half types against the CPU f32 result on the rounded inputs.
  for (DType dt : {DType::f16, DType::bf16}) {
    Tensor ha = a.to(dt).to(DType::f32), hb = b.to(dt).to(DType::f32);
    PT_EXPECT_CLOSE(mul(ga.to(dt), gb.to(dt)), mul(ha, hb), test::kHalf);
    PT_EXPECT_CLOSE(exp(ga.to(dt)), exp(ha), test::kHalf);
  }
  Tensor y = random_tensor({64}, 23, -1, 1), g = random_tensor({64}, 24);
  PT_EXPECT_CLOSE(relu_backward(g.to(Device::cuda), y.to(Device::cuda)), relu_backward(g, y), test::kElementwiseF32);
  Tensor keep = compare_scalar(y, 0.0, CompareOp::gt);
  EXPECT_TRUE(test::tensors_equal(compare_scalar(y.to(Device::cuda), 0.0, CompareOp::gt), keep));
  EXPECT_TRUE(test::tensors_equal(compare(ga, gb, CompareOp::le), compare(a, b, CompareOp::le)));
  EXPECT_TRUE(test::tensors_equal(apply_mask(y.to(Device::cuda), keep.to(Device::cuda)), apply_mask(y, keep)));
  EXPECT_TRUE(test::tensors_equal(where(keep.to(Device::cuda), y.to(Device::cuda), g.to(Device::cuda)), where(keep, y, g)));
  Generator g1(9), g2(9);
  PT_EXPECT_CLOSE(dropout_mask({4096}, 0.1, g1, DType::f32, Device::cuda),
                  dropout_mask({4096}, 0.1, g2, DType::f32, Device::cpu), test::kElementwiseF32);
  EXPECT_TRUE(test::tensors_equal(cat({ga, ga}, 0), cat({a, a}, 0)));
  EXPECT_THROW(add(ga, b), Error);  // mixed devices
}

}  // namespace
}  // namespace pt
