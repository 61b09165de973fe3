// What the sparse-linear tests share: random keep-masks (unstructured and 2:4), the f64 masked-dense reference
// and the relative error of a whole product.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "tensor/ops.h"

namespace pt::test {

// A keep-mask pruning exactly round(sparsity·numel) entries chosen uniformly at random.
inline Tensor random_mask(int64_t out, int64_t in, double sparsity, uint64_t seed) {
  std::vector<uint8_t> keep(size_t(out * in), 1);
  std::vector<size_t> order(keep.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  const size_t pruned = size_t(std::llround(sparsity * double(keep.size())));
  for (size_t i = 0; i < pruned; ++i) keep[order[i]] = 0;
  return Tensor::from_vector(keep, {out, in});
}

// A 2:4 keep-mask: every group of 4 keeps 2 at random positions, except that about one group in eight keeps
// fewer (1 or 0), which the layout must pad.
inline Tensor random_two_four_mask(int64_t out, int64_t in, uint64_t seed) {
  std::vector<uint8_t> keep(size_t(out * in), 0);
  std::mt19937_64 rng(seed);
  for (int64_t g = 0; g < out * in / 4; ++g) {
    int pos[4] = {0, 1, 2, 3};
    std::shuffle(pos, pos + 4, rng);
    const int kept = rng() % 8 == 0 ? int(rng() % 2) : 2;
    for (int j = 0; j < kept; ++j) keep[size_t(4 * g + pos[j])] = 1;
  }
  return Tensor::from_vector(keep, {out, in});
}

// The reference: the dense product with the mask applied, computed in f64.
inline Tensor masked_dense_reference(const Tensor& x, const Tensor& w, const Tensor& keep, const Tensor& bias) {
  const Tensor wm = apply_mask(w.to(Device::cpu, DType::f64), keep.to(Device::cpu));
  return linear(x.to(Device::cpu, DType::f64), wm, bias.defined() ? bias.to(Device::cpu, DType::f64) : bias);
}

// max |a - e| / max |e|: the relative error of a whole product (elements near 0 are judged against the scale).
inline double relative_error(const Tensor& actual, const Tensor& expected) {
  const Tensor a = actual.to(Device::cpu, DType::f64).contiguous(), e = expected.to(Device::cpu, DType::f64).contiguous();
  EXPECT_EQ(a.shape(), e.shape());
  double worst = 0, scale = 0;
  for (int64_t i = 0; i < e.numel(); ++i) {
    worst = std::max(worst, std::abs(a.data<double>()[i] - e.data<double>()[i]));
    if (std::isnan(a.data<double>()[i])) return INFINITY;
    scale = std::max(scale, std::abs(e.data<double>()[i]));
  }
  return worst / scale;
}

}  // namespace pt::test
