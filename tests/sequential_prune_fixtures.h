// Shared by the sequential-driver suites (test_sequential_prune.cpp, test_sequential_prune_model.cpp): small
// random OPT configs and calibration ids, the driver's options, and hand-written references (LayerNorm rows,
// XᵀX in double, exact pruned counts).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <unordered_map>

#include "autograd/variable.h"
#include "corpus/tokenizer.h"
#include "corpus/wikitext.h"
#include "nn/adamw.h"
#include "opt/model.h"
#include "opt/perplexity.h"
#include "prune/calibration.h"
#include "prune/sequential.h"
#include "tests/test_util.h"

namespace pt::prune::sequential_fixtures {

using autograd::Variable;
using opt::OptConfig;
using opt::OptForCausalLM;
using test::expect_error;

constexpr int64_t kSamples = 16, kSeqlen = 32;

inline OptConfig test_config(int64_t layers = 3) {
  OptConfig c = opt::opt_preset("tiny");  // hidden 64, ffn 256, 4 heads, vocab 512, context 64
  c.num_hidden_layers = layers;
  return c;
}

// A random model whose LayerNorm gains differ per feature (so input features have different scales, as in a
// trained model, and Wanda / SparseGPT have something to exploit) and whose biases are not zero.
inline std::unique_ptr<OptForCausalLM> make_model(uint64_t seed, Device device = Device::cpu,
                                                  const OptConfig& config = test_config()) {
  auto model = std::make_unique<OptForCausalLM>(config, device, seed);
  Generator gen(seed + 1000);
  for (auto& [name, m] : model->named_modules()) {
    if (auto* ln = dynamic_cast<nn::LayerNorm*>(m)) {
      ln->weight.data() = Tensor::uniform(ln->weight.shape(), 0.1, 3.0, gen, DType::f32, device);
      ln->bias.data() = Tensor::uniform(ln->bias.shape(), -0.3, 0.3, gen, DType::f32, device);
    } else if (auto* lin = dynamic_cast<nn::Linear*>(m); lin && lin->bias.defined()) {
      lin->bias.data() = Tensor::uniform(lin->bias.shape(), -0.05, 0.05, gen, DType::f32, device);
    }
  }
  return model;
}

inline Tensor random_ids(int64_t n, int64_t t, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, int32_t(vocab - 1));
  std::vector<int32_t> v(static_cast<size_t>(n * t));
  for (auto& x : v) x = dist(rng);
  return Tensor::from_vector(v, {n, t});
}

inline SequentialPruneOptions options(PruneMethod method, double sparsity) {
  SequentialPruneOptions o;
  o.method = method;
  o.pattern = SparsityPattern::unstructured(sparsity);
  o.forward_batch = 5;  // 16 sequences = 5 + 5 + 5 + 1: uneven chunks
  o.show_progress = false;
  return o;
}

// ---- independent references (double loops) --------------------------------------------------------------

// LayerNorm over the last dim of x [rows, C].
inline std::vector<double> layer_norm_rows(const std::vector<double>& x, int64_t C, const nn::LayerNorm& ln) {
  const auto w = ln.weight.data().to_vector<double>(), b = ln.bias.data().to_vector<double>();
  std::vector<double> y(x.size());
  for (size_t r = 0; r < x.size() / size_t(C); ++r) {
    double mean = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) mean += x[r * C + c];
    mean /= double(C);
    for (int64_t c = 0; c < C; ++c) var += (x[r * C + c] - mean) * (x[r * C + c] - mean);
    const double rstd = 1.0 / std::sqrt(var / double(C) + ln.eps());
    for (int64_t c = 0; c < C; ++c) y[r * C + c] = (x[r * C + c] - mean) * rstd * w[size_t(c)] + b[size_t(c)];
  }
  return y;
}

// SparseGPT's H = (2 / sequences) Σ over all tokens of x xᵀ.
inline std::vector<double> naive_hessian(const std::vector<double>& x, int64_t C, int64_t sequences) {
  std::vector<double> H(static_cast<size_t>(C * C), 0.0);
  for (size_t r = 0; r < x.size() / size_t(C); ++r)
    for (int64_t i = 0; i < C; ++i)
      for (int64_t j = 0; j < C; ++j) H[size_t(i * C + j)] += x[r * C + i] * x[r * C + j];
  for (auto& h : H) h *= 2.0 / double(sequences);
  return H;
}

// max |a - e| / max |e|.
inline double relative_max_error(const std::vector<double>& a, const std::vector<double>& e) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < e.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - e[i]));
    scale = std::max(scale, std::abs(e[i]));
  }
  return diff / scale;
}

// What a method prunes in a [rows, cols] weight: Wanda compares within rows, so its count is exact per row.
inline int64_t expected_pruned(PruneMethod method, const Tensor& weight, double s) {
  return method == PruneMethod::wanda ? weight.size(0) * pruned_count(weight.size(1), s)
                                      : pruned_count(weight.numel(), s);
}

inline int64_t zeros(const Tensor& keep) {
  int64_t z = 0;
  for (uint8_t k : keep.to_vector<uint8_t>()) z += k == 0;
  return z;
}

inline std::map<std::string, Tensor> cloned_state(const OptForCausalLM& m) {
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : m.state_dict()) out[name] = t.clone();
  return out;
}

// ---- (a) layer-0 inputs and Hessian ----------------------------------------------------------------------

}  // namespace pt::prune::sequential_fixtures
