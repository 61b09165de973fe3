// One softmax row in place on the CPU, shared by the softmax op and the blocked causal attention: the first
// `valid` entries become exp(x - max) / sum (one exp per element, sums in double), the rest exactly 0. f32 rows
// take exp_rows' vectorised exponentials and lane sums; f64 rows (the reference dtype) libm's exp, summed in order.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "tensor/ops/exp_rows.h"

namespace pt::cpu {

template <class T> inline void softmax_row(const T* x, T* y, int64_t n, int64_t valid) {
  double s = 0;
  if constexpr (std::is_same_v<T, float>) {
    s = exp_shifted_sum(x, y, valid, max_f32(x, valid));
  } else {
    T m = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < valid; ++j) m = std::max(m, x[j]);
    for (int64_t j = 0; j < valid; ++j) {
      y[j] = std::exp(x[j] - m);
      s += double(y[j]);
    }
  }
  const T inv = T(1.0 / s);
  for (int64_t j = 0; j < valid; ++j) y[j] *= inv;
  for (int64_t j = valid; j < n; ++j) y[j] = T(0);
}

// log sum_j exp(x[j]) over n entries: max + log(sum exp(x - max)), the exponentials and sum as in softmax_row.
template <class T> inline double log_sum_exp_row(const T* x, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
  double s = 0;
  if constexpr (std::is_same_v<T, float>) {
    m = max_f32(x, n);
    s = exp_shifted_sum(x, nullptr, n, m);
  } else {
    for (int64_t j = 0; j < n; ++j) m = std::max(m, x[j]);
    for (int64_t j = 0; j < n; ++j) s += double(std::exp(x[j] - m));
  }
  return double(m) + std::log(s);
}

}  // namespace pt::cpu
