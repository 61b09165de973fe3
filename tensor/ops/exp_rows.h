// f32 exponentials for the CPU's softmax rows and cross-entropy, eight lanes at a time (AVX2 + FMA, chosen at run
// time) or one at a time, with the same bits either way: the scalar path performs the lanes' operations in the
// same order (std::fma where the lanes fuse), and exp_rows.cpp is built without FMA contraction.
//
// exp_f32: exp(x) = 2^n · e^r with n = round(x·log2 e), r = x - n·ln 2 (two-part ln 2, fused), e^r by its Taylor
// polynomial of degree 7 (truncation < 4e-9 relative on |r| <= ln2/2), 2^n applied as two exact power-of-two
// factors so that subnormal results round once and overflow gives inf. Within 1 ulp of the exact value wherever
// the result is normal (0.93 at worst over 2e7 random arguments; libm: 0.5); exp(-inf) = 0, exp(+inf) = inf, NaN
// stays NaN. libm's expf is a call per element, and this is the softmax's inner loop (the causal attention's, the
// cross-entropy's over a 50272-word vocabulary).
#pragma once
#include <cstdint>

namespace pt::cpu {

float exp_f32(float x);

// The largest of x[0..n), NaNs skipped (as std::max(m, x[j]) from -inf does); -inf when there is none.
float max_f32(const float* x, int64_t n);

// y[j] = exp_f32(x[j] - shift) for j < n (y may equal x; y == nullptr only sums). Returns the sum of those values
// in double, added in a fixed order: lane l = j mod 8 takes element j, then ((l0+l4) + (l1+l5)) + ((l2+l6) + (l3+l7)).
double exp_shifted_sum(const float* x, float* y, int64_t n, float shift);

// y[j] = scale * exp_f32(x[j] - shift) for j < n (y may equal x).
void exp_shifted_scaled(const float* x, float* y, int64_t n, float shift, float scale);

namespace detail {
// The one-lane paths, which every CPU can run; tests check the vector paths against them bit for bit.
double exp_shifted_sum_scalar(const float* x, float* y, int64_t n, float shift);
void exp_shifted_scaled_scalar(const float* x, float* y, int64_t n, float shift, float scale);
bool exp_rows_use_avx2();
}  // namespace detail

}  // namespace pt::cpu
