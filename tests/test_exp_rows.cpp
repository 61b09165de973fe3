// exp_rows (tensor/ops/exp_rows.h): the f32 exponential against the exact value, its special cases, the row
// kernels against double references, and the AVX2 lanes against the one-lane path bit for bit.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "tensor/ops/exp_rows.h"

namespace pt {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Distance in units in the last place between a float and the exact value (double).
double ulp_error(float got, double exact) {
  const float near = float(exact);
  const double ulp = double(std::nextafter(std::fabs(near), kInf)) - double(std::fabs(near));
  return std::fabs(double(got) - exact) / ulp;
}

std::vector<float> random_floats(size_t n, float lo, float hi, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(gen);
  return v;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

TEST(ExpRows, ExpIsWithinOneUlpWhereTheResultIsNormal) {
  std::vector<float> xs = random_floats(200000, -87.0f, 88.7f, 1);
  for (float x : {0.0f, -0.0f, 1.0f, -1.0f, 0.34657359f, -0.34657359f, 88.72f, -87.33f, 1e-8f, -1e-8f})
    xs.push_back(x);
  double worst = 0;
  for (float x : xs) {
    const double exact = std::exp(double(x));
    if (exact < double(std::numeric_limits<float>::min()) || exact > double(std::numeric_limits<float>::max()))
      continue;
    worst = std::max(worst, ulp_error(cpu::exp_f32(x), exact));
    ASSERT_LE(ulp_error(cpu::exp_f32(x), exact), 1.0) << "x = " << x;
  }
  EXPECT_GT(worst, 0.0);  // a sweep that never rounds would be suspicious
}

TEST(ExpRows, SubnormalResultsOverflowAndSpecialValues) {
  for (float x = -103.9f; x < -87.4f; x += 0.37f) {  // subnormal results: within two of the smallest steps
    const double exact = std::exp(double(x));
    EXPECT_LE(std::fabs(double(cpu::exp_f32(x)) - exact), 2.0 * std::ldexp(1.0, -149)) << "x = " << x;
  }
  EXPECT_EQ(cpu::exp_f32(-kInf), 0.0f);
  EXPECT_EQ(cpu::exp_f32(-1000.0f), 0.0f);
  EXPECT_EQ(cpu::exp_f32(kInf), kInf);
  EXPECT_EQ(cpu::exp_f32(89.0f), kInf);
  EXPECT_EQ(cpu::exp_f32(0.0f), 1.0f);
  EXPECT_TRUE(std::isnan(cpu::exp_f32(std::numeric_limits<float>::quiet_NaN())));
  const float below_max = 88.7f;  // the largest normal results are finite
  EXPECT_TRUE(std::isfinite(cpu::exp_f32(below_max)));
}

TEST(ExpRows, RowKernelsMatchDoubleReferences) {
  for (int64_t n : {1, 7, 8, 9, 50272}) {
    std::vector<float> x = random_floats(size_t(n), -20.0f, 6.0f, unsigned(n)), y(static_cast<size_t>(n));
    double ref_max = -kInf;
    for (float v : x) ref_max = std::max(ref_max, double(v));
    const float m = cpu::max_f32(x.data(), n);
    EXPECT_EQ(double(m), ref_max);
    double ref_sum = 0;
    for (float v : x) ref_sum += std::exp(double(v - m));
    const double s = cpu::exp_shifted_sum(x.data(), y.data(), n, m);
    EXPECT_NEAR(s, ref_sum, 1e-6 * ref_sum) << "n = " << n;
    EXPECT_EQ(cpu::exp_shifted_sum(x.data(), nullptr, n, m), s);  // summing alone gives the same bits
    std::vector<float> z(static_cast<size_t>(n));
    cpu::exp_shifted_scaled(x.data(), z.data(), n, m, 0.25f);
    for (int64_t j = 0; j < n; ++j) {
      EXPECT_TRUE(same_bits(y[size_t(j)], cpu::exp_f32(x[size_t(j)] - m))) << "j = " << j;
      ASSERT_TRUE(same_bits(z[size_t(j)], 0.25f * y[size_t(j)])) << "j = " << j;
    }
  }
}

TEST(ExpRows, MaxSkipsNaNsAndIsMinusInfinityWhenEmpty) {
  std::vector<float> x = random_floats(37, -5.0f, 5.0f, 3);
  float ref = -kInf;
  for (float v : x) ref = std::max(ref, v);
  x[4] = std::numeric_limits<float>::quiet_NaN();  // not the largest: still skipped
  x[20] = std::numeric_limits<float>::quiet_NaN();
  float ref_without = -kInf;
  for (float v : x) ref_without = std::isnan(v) ? ref_without : std::max(ref_without, v);
  EXPECT_EQ(cpu::max_f32(x.data(), int64_t(x.size())), ref_without);
  EXPECT_EQ(cpu::max_f32(x.data(), 0), -kInf);
  std::vector<float> minus_inf(11, -kInf);
  EXPECT_EQ(cpu::max_f32(minus_inf.data(), 11), -kInf);
}

TEST(ExpRows, VectorLanesEqualTheScalarPathBitForBit) {
  if (!cpu::detail::exp_rows_use_avx2()) GTEST_SKIP() << "this CPU has no AVX2+FMA: only the scalar path runs";
  std::vector<float> base = random_floats(5000, -110.0f, 12.0f, 7);
  base[13] = -kInf;
  base[100] = std::numeric_limits<float>::quiet_NaN();
  for (int64_t offset : {0, 1, 3}) {  // unaligned starts
    for (int64_t n : {0, 1, 5, 8, 15, 16, 33, 1000, 4099}) {
      const float* x = base.data() + offset;
      const size_t len = static_cast<size_t>(n);
      std::vector<float> yv(len), ys(len), zv(len), zs(len);
      const double sv = cpu::exp_shifted_sum(x, yv.data(), n, 3.5f);
      const double ss = cpu::detail::exp_shifted_sum_scalar(x, ys.data(), n, 3.5f);
      EXPECT_TRUE(std::memcmp(&sv, &ss, sizeof sv) == 0 || (std::isnan(sv) && std::isnan(ss)))
          << "sum, n = " << n << ", offset " << offset;
      cpu::exp_shifted_scaled(x, zv.data(), n, -2.0f, 0.125f);
      cpu::detail::exp_shifted_scaled_scalar(x, zs.data(), n, -2.0f, 0.125f);
      for (int64_t j = 0; j < n; ++j) {
        ASSERT_TRUE(same_bits(yv[size_t(j)], ys[size_t(j)]) || (std::isnan(yv[size_t(j)]) && std::isnan(ys[size_t(j)])))
            << "exp, j = " << j << ", n = " << n;
        ASSERT_TRUE(same_bits(zv[size_t(j)], zs[size_t(j)]) || (std::isnan(zv[size_t(j)]) && std::isnan(zs[size_t(j)])))
            << "scaled, j = " << j << ", n = " << n;
      }
    }
  }
}

}  // namespace
}  // namespace pt
