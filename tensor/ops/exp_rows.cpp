// Built with -ffp-contract=off (CMakeLists.txt): every multiply and add below rounds as written, in both paths.
#include "tensor/ops/exp_rows.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace pt::cpu {
namespace {

constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;               // ln 2 to 9 bits, so n·kLn2Hi is exact for |n| < 2^15
constexpr float kLn2Lo = -2.12194440054690583e-4f;   // ln 2 - kLn2Hi
constexpr float kHi = 89.0f, kLo = -104.0f;          // beyond: inf and 0 come out of the scaling by themselves
// e^r = sum r^k / k!, k = 0..7
constexpr float kCoef[8] = {1.0f, 1.0f, 0.5f, 1.0f / 6, 1.0f / 24, 1.0f / 120, 1.0f / 720, 1.0f / 5040};

float pow2(int32_t e) {  // 2^e for e in [-126, 127]
  const uint32_t bits = uint32_t(e + 127) << 23;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

float exp_one(float x) {
  x = kHi < x ? kHi : x;  // the lanes' min(kHi, x) and max(kLo, x): a NaN x stays x
  x = kLo > x ? kLo : x;
  if (std::isnan(x)) return x;
  const float n = std::nearbyint(x * kLog2e);
  float r = std::fma(n, -kLn2Hi, x);
  r = std::fma(n, -kLn2Lo, r);
  float p = kCoef[7];
  for (int k = 6; k >= 0; --k) p = std::fma(p, r, kCoef[k]);
  const int32_t ni = int32_t(n), n1 = ni >> 1, n2 = ni - n1;  // 2^n as two factors: each one normal
  return p * pow2(n1) * pow2(n2);
}

// The tail of a row (j .. n) one lane at a time into the lane sums, then the fixed combination.
double finish_sum(const float* x, float* y, int64_t j, int64_t n, float shift, double* lane) {
  for (; j < n; ++j) {
    const float e = exp_one(x[j] - shift);
    if (y) y[j] = e;
    lane[j % 8] += double(e);
  }
  return ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
}

__attribute__((target("avx2,fma"))) inline __m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(kHi), x);  // min/max return the second operand on NaN: x
  x = _mm256_max_ps(_mm256_set1_ps(kLo), x);
  const __m256 n =
      _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-kLn2Hi), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(-kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kCoef[7]);
  for (int k = 6; k >= 0; --k) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kCoef[k]));
  const __m256i ni = _mm256_cvtps_epi32(n), bias = _mm256_set1_epi32(127);
  const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

__attribute__((target("avx2,fma"))) double exp_shifted_sum_avx2(const float* x, float* y, int64_t n, float shift) {
  const __m256 sh = _mm256_set1_ps(shift);
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();  // lanes 0-3 and 4-7
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), sh));
    if (y) _mm256_storeu_ps(y + j, e);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  double lane[8];
  _mm256_storeu_pd(lane, lo);
  _mm256_storeu_pd(lane + 4, hi);
  return finish_sum(x, y, j, n, shift, lane);
}

__attribute__((target("avx2,fma"))) void exp_shifted_scaled_avx2(const float* x, float* y, int64_t n, float shift,
                                                                 float scale) {
  const __m256 sh = _mm256_set1_ps(shift), sc = _mm256_set1_ps(scale);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(y + j, _mm256_mul_ps(sc, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), sh))));
  for (; j < n; ++j) y[j] = scale * exp_one(x[j] - shift);
}

__attribute__((target("avx2,fma"))) float max_f32_avx2(const float* x, int64_t n) {
  __m256 m = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) m = _mm256_max_ps(_mm256_loadu_ps(x + j), m);  // a NaN element gives m back
  float lane[8];
  _mm256_storeu_ps(lane, m);
  float r = -std::numeric_limits<float>::infinity();
  for (float v : lane) r = std::max(r, v);
  for (; j < n; ++j) r = std::max(r, x[j]);
  return r;
}

}  // namespace

namespace detail {

bool exp_rows_use_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}

double exp_shifted_sum_scalar(const float* x, float* y, int64_t n, float shift) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  return finish_sum(x, y, 0, n, shift, lane);
}

void exp_shifted_scaled_scalar(const float* x, float* y, int64_t n, float shift, float scale) {
  for (int64_t j = 0; j < n; ++j) y[j] = scale * exp_one(x[j] - shift);
}

}  // namespace detail

float exp_f32(float x) { return exp_one(x); }

float max_f32(const float* x, int64_t n) {
  if (detail::exp_rows_use_avx2()) return max_f32_avx2(x, n);
  float r = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) r = std::max(r, x[j]);
  return r;
}

double exp_shifted_sum(const float* x, float* y, int64_t n, float shift) {
  return detail::exp_rows_use_avx2() ? exp_shifted_sum_avx2(x, y, n, shift)
                                     : detail::exp_shifted_sum_scalar(x, y, n, shift);
}

void exp_shifted_scaled(const float* x, float* y, int64_t n, float shift, float scale) {
  if (detail::exp_rows_use_avx2()) exp_shifted_scaled_avx2(x, y, n, shift, scale);
  else detail::exp_shifted_scaled_scalar(x, y, n, shift, scale);
}

}  // namespace pt::cpu
