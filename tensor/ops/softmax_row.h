// One softmax row in place on the CPU, shared by the softmax op and the blocked causal attention: the first
// `valid` entries become exp(x - max) / sum (one exp per element, sums in double), the rest exactly 0.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace pt::cpu {

template <class T> inline void softmax_row(const T* x, T* y, int64_t n, int64_t valid) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < valid; ++j) m = std::max(m, x[j]);
  double s = 0;
  for (int64_t j = 0; j < valid; ++j) {
    y[j] = std::exp(x[j] - m);
    s += double(y[j]);
  }
  const T inv = T(1.0 / s);
  for (int64_t j = 0; j < valid; ++j) y[j] *= inv;
  for (int64_t j = valid; j < n; ++j) y[j] = T(0);
}

}  // namespace pt::cpu
