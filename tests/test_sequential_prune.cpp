// The sequential layer-by-layer driver on small random OPT models, checked against computations written here:
// layer inputs and Hessians rebuilt by hand (LayerNorm and XᵀX in double), exact sparsity per matrix, untouched
// non-pruned tensors, mask persistence across an iterative schedule, N:M groups, the reconstruction-error order
// of the methods, and an end-to-end check that SparseGPT beats magnitude on a model trained on WikiText-2.
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

namespace pt::prune {
namespace {

using autograd::Variable;
using opt::OptConfig;
using opt::OptForCausalLM;
using test::expect_error;

constexpr int64_t kSamples = 16, kSeqlen = 32;

OptConfig test_config(int64_t layers = 3) {
  OptConfig c = opt::opt_preset("tiny");  // hidden 64, ffn 256, 4 heads, vocab 512, context 64
  c.num_hidden_layers = layers;
  return c;
}

// A random model whose LayerNorm gains differ per feature (so input features have different scales, as in a
// trained model, and Wanda / SparseGPT have something to exploit) and whose biases are not zero.
std::unique_ptr<OptForCausalLM> make_model(uint64_t seed, Device device = Device::cpu,
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

Tensor random_ids(int64_t n, int64_t t, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, int32_t(vocab - 1));
  std::vector<int32_t> v(static_cast<size_t>(n * t));
  for (auto& x : v) x = dist(rng);
  return Tensor::from_vector(v, {n, t});
}

SequentialPruneOptions options(PruneMethod method, double sparsity) {
  SequentialPruneOptions o;
  o.method = method;
  o.pattern = SparsityPattern::unstructured(sparsity);
  o.forward_batch = 5;  // 16 sequences = 5 + 5 + 5 + 1: uneven chunks
  o.show_progress = false;
  return o;
}

// ---- independent references (double loops) --------------------------------------------------------------

// LayerNorm over the last dim of x [rows, C].
std::vector<double> layer_norm_rows(const std::vector<double>& x, int64_t C, const nn::LayerNorm& ln) {
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
std::vector<double> naive_hessian(const std::vector<double>& x, int64_t C, int64_t sequences) {
  std::vector<double> H(static_cast<size_t>(C * C), 0.0);
  for (size_t r = 0; r < x.size() / size_t(C); ++r)
    for (int64_t i = 0; i < C; ++i)
      for (int64_t j = 0; j < C; ++j) H[size_t(i * C + j)] += x[r * C + i] * x[r * C + j];
  for (auto& h : H) h *= 2.0 / double(sequences);
  return H;
}

// max |a - e| / max |e|.
double relative_max_error(const std::vector<double>& a, const std::vector<double>& e) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < e.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - e[i]));
    scale = std::max(scale, std::abs(e[i]));
  }
  return diff / scale;
}

// What a method prunes in a [rows, cols] weight: Wanda compares within rows, so its count is exact per row.
int64_t expected_pruned(PruneMethod method, const Tensor& weight, double s) {
  return method == PruneMethod::wanda ? weight.size(0) * pruned_count(weight.size(1), s)
                                      : pruned_count(weight.numel(), s);
}

int64_t zeros(const Tensor& keep) {
  int64_t z = 0;
  for (uint8_t k : keep.to_vector<uint8_t>()) z += k == 0;
  return z;
}

std::map<std::string, Tensor> cloned_state(const OptForCausalLM& m) {
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : m.state_dict()) out[name] = t.clone();
  return out;
}

// ---- (a) layer-0 inputs and Hessian ----------------------------------------------------------------------

TEST(SequentialPrune, LayerZeroInputsAndHessianMatchAHandBuiltReference) {
  auto model = make_model(1);
  const Tensor ids = random_ids(kSamples, kSeqlen, 512, 2);
  const Tensor embedded = model->embed(ids);
  Tensor layer0_inputs;
  std::map<std::string, Tensor> hessians;
  SequentialPruneOptions o = options(PruneMethod::sparsegpt, 0.5);
  o.layer_input_observer = [&](int64_t layer, const Tensor& x) { if (layer == 0) layer0_inputs = x.clone(); };
  o.hessian_observer = [&](const std::string& name, const Tensor& H) { hessians[name] = H.clone(); };
  prune_model(*model, ids, o);

  ASSERT_TRUE(layer0_inputs.defined());
  EXPECT_TRUE(test::tensors_equal(layer0_inputs, embedded));  // the same embedding, chunked or not
  const int64_t C = 64;
  const auto x = layer_norm_rows(embedded.to_vector<double>(), C, model->layer(0).self_attn_layer_norm);
  const auto expected = naive_hessian(x, C, kSamples);
  const std::string l0 = "model.decoder.layers.0.";
  for (const char* proj : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}) {
    ASSERT_TRUE(hessians.count(l0 + proj)) << proj;
    EXPECT_LT(relative_max_error(hessians[l0 + proj].to_vector<double>(), expected), 2e-6) << proj;
  }
  EXPECT_EQ(hessians.size(), 6u * 3u);  // every matrix of every layer was given a Hessian
  EXPECT_EQ(hessians[l0 + "fc2"].shape(), (Shape{256, 256}));
}

// ---- (b) sequential semantics ----------------------------------------------------------------------------

TEST(SequentialPrune, EachLayerIsCalibratedOnTheOutputsOfThePrunedLayersBeforeIt) {
  auto model = make_model(3);
  auto dense = make_model(3);
  const Tensor ids = random_ids(kSamples, kSeqlen, 512, 4);
  std::vector<Tensor> inputs(3);
  std::map<std::string, Tensor> hessians;
  SequentialPruneOptions o = options(PruneMethod::sparsegpt, 0.6);
  o.layer_input_observer = [&](int64_t layer, const Tensor& x) { inputs[size_t(layer)] = x.clone(); };
  o.hessian_observer = [&](const std::string& name, const Tensor& H) { hessians[name] = H.clone(); };
  prune_model(*model, ids, o);

  // Rerun the pruned model by hand: layer i's inputs are the outputs of pruned layers 0..i-1.
  autograd::NoGradGuard no_grad;
  model->eval();
  dense->eval();
  Tensor x = model->embed(ids), x_dense = dense->embed(ids);
  for (int64_t i = 0; i < 3; ++i) {
    SCOPED_TRACE("layer " + std::to_string(i));
    PT_EXPECT_CLOSE(inputs[size_t(i)], x, (test::Tolerance{1e-5, 1e-6}));
    if (i > 0) {
      EXPECT_FALSE(test::tensors_close(inputs[size_t(i)], x_dense, test::Tolerance{1e-3, 1e-4}))
          << "the pruned model's activations should differ from the dense model's";
    }
    const auto ln = layer_norm_rows(x.to_vector<double>(), 64, model->layer(i).self_attn_layer_norm);
    const Tensor& H = hessians["model.decoder.layers." + std::to_string(i) + ".self_attn.q_proj"];
    EXPECT_LT(relative_max_error(H.to_vector<double>(), naive_hessian(ln, 64, kSamples)), 1e-5);
    x = model->layer(i).forward(Variable(x)).data();
    x_dense = dense->layer(i).forward(Variable(x_dense)).data();
  }
}

// ---- (c) exact sparsity; nothing else touched -------------------------------------------------------------

TEST(SequentialPrune, EveryMethodPrunesEveryDecoderLinearExactlyAndTouchesNothingElse) {
  const Tensor ids = random_ids(kSamples, kSeqlen, 512, 6);
  for (PruneMethod method : {PruneMethod::magnitude, PruneMethod::wanda, PruneMethod::sparsegpt}) {
    SCOPED_TRACE(prune_method_name(method));
    auto model = make_model(5);
    const auto before = cloned_state(*model);
    const double s = 0.37;
    const PruneReport report = prune_model(*model, ids, options(method, s));

    std::set<std::string> pruned_names;
    ASSERT_EQ(report.matrices.size(), 18u);
    size_t k = 0;
    for (auto& [name, lin] : model->linear_layers()) {
      pruned_names.insert(name + ".weight");
      ASSERT_TRUE(lin->has_mask()) << name;
      const Tensor& keep = lin->weight_mask;
      const Tensor w = lin->weight.data(), w0 = before.at(name + ".weight");
      EXPECT_EQ(zeros(keep), expected_pruned(method, w, s)) << name;
      EXPECT_EQ(report.matrices[k].name, name);
      EXPECT_DOUBLE_EQ(report.matrices[k].sparsity, double(expected_pruned(method, w, s)) / double(w.numel()));
      EXPECT_TRUE(std::isfinite(report.matrices[k].reconstruction_error));
      ++k;
      const auto kv = keep.to_vector<uint8_t>();
      const auto wv = w.to_vector<float>(), w0v = w0.to_vector<float>();
      int64_t moved = 0;
      float max_pruned = 0, min_kept = INFINITY;
      for (size_t e = 0; e < kv.size(); ++e) {
        if (!kv[e]) {
          ASSERT_EQ(wv[e], 0.0f) << name << " element " << e;
          max_pruned = std::max(max_pruned, std::abs(w0v[e]));
        } else {
          moved += wv[e] != w0v[e];
          min_kept = std::min(min_kept, std::abs(w0v[e]));
        }
      }
      // Only SparseGPT updates the weights it keeps; magnitude prunes the smallest |w| of the matrix.
      if (method == PruneMethod::sparsegpt) {
        EXPECT_GT(moved, int64_t(kv.size()) / 4) << name;
      } else {
        EXPECT_EQ(moved, 0) << name;
      }
      if (method == PruneMethod::magnitude) {
        EXPECT_LE(max_pruned, min_kept) << name;
      }
    }
    for (auto& [name, t] : before)
      if (!pruned_names.count(name)) {
        EXPECT_TRUE(test::same_bytes(model->state_dict().at(name), t)) << name;
      }
    EXPECT_NEAR(report.sparsity, s, method == PruneMethod::wanda ? 0.01 : 1e-4);
  }
}

TEST(SequentialPrune, WandaComparesWithinRowsByWeightTimesInputNorm) {
  auto model = make_model(7);
  const Tensor ids = random_ids(kSamples, kSeqlen, 512, 8);
  const Tensor w0 = model->layer(0).self_attn.q_proj.weight.data().clone();
  const auto x = layer_norm_rows(model->embed(ids).to_vector<double>(), 64, model->layer(0).self_attn_layer_norm);
  prune_model(*model, ids, options(PruneMethod::wanda, 0.5));

  std::vector<double> norm(64, 0.0);  // ||X_j||² over every calibration token
  for (size_t r = 0; r < x.size() / 64; ++r)
    for (size_t j = 0; j < 64; ++j) norm[j] += x[r * 64 + j] * x[r * 64 + j];
  const auto keep = model->layer(0).self_attn.q_proj.weight_mask.to_vector<uint8_t>();
  const auto w = w0.to_vector<double>();
  for (int64_t r = 0; r < 64; ++r) {
    double max_pruned = 0, min_kept = INFINITY;
    int64_t pruned = 0;
    for (int64_t c = 0; c < 64; ++c) {
      const double score = std::abs(w[size_t(r * 64 + c)]) * std::sqrt(norm[size_t(c)]);
      if (keep[size_t(r * 64 + c)]) min_kept = std::min(min_kept, score);
      else max_pruned = std::max(max_pruned, score), ++pruned;
    }
    ASSERT_EQ(pruned, 32) << "row " << r;
    ASSERT_LE(max_pruned, min_kept) << "row " << r;
  }
}

// ---- (d) iterative schedules and N:M ----------------------------------------------------------------------

TEST(SequentialPrune, MasksPersistAcrossAnIterativeSchedule) {
  const Tensor ids = random_ids(kSamples, kSeqlen, 512, 10);
  for (PruneMethod method : {PruneMethod::magnitude, PruneMethod::wanda, PruneMethod::sparsegpt}) {
    SCOPED_TRACE(prune_method_name(method));
    auto model = make_model(9);
    prune_model(*model, ids, options(method, 0.3));
    std::vector<Tensor> first;
    for (auto& [name, lin] : model->linear_layers()) first.push_back(lin->weight_mask.clone());
    prune_model(*model, ids, options(method, 0.6));
    size_t k = 0;
    for (auto& [name, lin] : model->linear_layers()) {
      const auto a = first[k++].to_vector<uint8_t>(), b = lin->weight_mask.to_vector<uint8_t>();
      const auto w = lin->weight.data().to_vector<float>();
      for (size_t e = 0; e < a.size(); ++e) {
        if (!a[e]) {
          ASSERT_EQ(b[e], 0) << name << ": position " << e << " came back";
        }
        if (!b[e]) {
          ASSERT_EQ(w[e], 0.0f) << name;
        }
      }
      EXPECT_EQ(zeros(lin->weight_mask), expected_pruned(method, lin->weight_mask, 0.6)) << name;
    }
  }
}

// Every group of 4 consecutive columns in a row holds exactly 2 zeros (counted here, not with is_nm_mask).
void expect_two_of_four(const Tensor& keep, const std::string& name) {
  const auto k = keep.to_vector<uint8_t>();
  const int64_t rows = keep.size(0), cols = keep.size(1);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < cols; g += 4) {
      int z = 0;
      for (int64_t c = g; c < g + 4; ++c) z += k[size_t(r * cols + c)] == 0;
      ASSERT_EQ(z, 2) << name << " row " << r << " group " << g;
    }
}

TEST(SequentialPrune, TwoFourEverywhereThenAHigherUnstructuredTargetKeepsThoseZeros) {
  const Tensor ids = random_ids(kSamples, kSeqlen, 512, 12);
  for (PruneMethod method : {PruneMethod::magnitude, PruneMethod::wanda, PruneMethod::sparsegpt}) {
    SCOPED_TRACE(prune_method_name(method));
    auto model = make_model(11);
    SequentialPruneOptions o = options(method, 0.5);
    o.pattern = SparsityPattern::nm(2, 4);
    const PruneReport r = prune_model(*model, ids, o);
    EXPECT_EQ(r.pattern, o.pattern.describe());
    std::vector<Tensor> nm;
    for (auto& [name, lin] : model->linear_layers()) {
      expect_two_of_four(lin->weight_mask, name);
      nm.push_back(lin->weight_mask.clone());
    }
    prune_model(*model, ids, options(method, 0.75));
    size_t k = 0;
    for (auto& [name, lin] : model->linear_layers()) {
      EXPECT_TRUE(mask_contains_pruned(lin->weight_mask, nm[k++])) << name;
      EXPECT_EQ(zeros(lin->weight_mask), expected_pruned(method, lin->weight_mask, 0.75)) << name;
    }
  }
}

// ---- (e) reconstruction error -----------------------------------------------------------------------------

TEST(SequentialPrune, SparseGptReconstructsBetterThanWandaBetterThanMagnitude) {
  const Tensor ids = random_ids(kSamples, kSeqlen, 512, 14);
  std::map<PruneMethod, PruneReport> reports;
  for (PruneMethod method : {PruneMethod::magnitude, PruneMethod::wanda, PruneMethod::sparsegpt}) {
    auto model = make_model(13);
    reports[method] = prune_model(*model, ids, options(method, 0.5));
  }
  const auto& mag = reports[PruneMethod::magnitude];
  const auto& wan = reports[PruneMethod::wanda];
  const auto& sgpt = reports[PruneMethod::sparsegpt];
  // Layer 0 sees the same inputs under every method: a like-for-like comparison, matrix by matrix.
  for (size_t j = 0; j < 6; ++j) {
    SCOPED_TRACE(mag.matrices[j].name);
    EXPECT_LT(sgpt.matrices[j].reconstruction_error, wan.matrices[j].reconstruction_error);
    EXPECT_LT(wan.matrices[j].reconstruction_error, mag.matrices[j].reconstruction_error);
  }
  EXPECT_LT(sgpt.reconstruction_error, wan.reconstruction_error);
  EXPECT_LT(wan.reconstruction_error, mag.reconstruction_error);
  double sum = 0;
  for (const auto& l : sgpt.layers) sum += l.reconstruction_error;
  EXPECT_NEAR(sum, sgpt.reconstruction_error, 1e-9 * sum);
  std::printf("summed reconstruction error at 50%%: sparsegpt %.4g, wanda %.4g, magnitude %.4g\n",
              sgpt.reconstruction_error, wan.reconstruction_error, mag.reconstruction_error);
}

TEST(SequentialPrune, ReportedErrorIsTheOutputChangeOnTheCalibrationTokens) {
  // For layer 0's q_proj: (1/n) Σ_tokens ||ΔW x||² over the LayerNorm outputs, computed here from activations.
  auto model = make_model(15);
  const Tensor ids = random_ids(kSamples, kSeqlen, 512, 16);
  const Tensor w0 = model->layer(0).self_attn.q_proj.weight.data().clone();
  const auto x = layer_norm_rows(model->embed(ids).to_vector<double>(), 64, model->layer(0).self_attn_layer_norm);
  const PruneReport r = prune_model(*model, ids, options(PruneMethod::sparsegpt, 0.5));
  const auto w_new = model->layer(0).self_attn.q_proj.weight.data().to_vector<double>();
  const auto w_old = w0.to_vector<double>();
  double err = 0;
  for (size_t t = 0; t < x.size() / 64; ++t)
    for (size_t row = 0; row < 64; ++row) {
      double d = 0;
      for (size_t c = 0; c < 64; ++c) d += (w_new[row * 64 + c] - w_old[row * 64 + c]) * x[t * 64 + c];
      err += d * d;
    }
  err /= double(kSamples);
  ASSERT_EQ(r.matrices[2].name, "model.decoder.layers.0.self_attn.q_proj");
  EXPECT_NEAR(r.matrices[2].reconstruction_error, err, 1e-4 * err);
}

// ---- (f) offloading, chunking, magnitude without data ------------------------------------------------------

TEST(SequentialPrune, OffloadingAndChunkingDoNotChangeTheResult) {
  const Tensor ids = random_ids(kSamples, kSeqlen, 512, 18);
  auto a = make_model(17), b = make_model(17), c = make_model(17);
  SequentialPruneOptions o = options(PruneMethod::sparsegpt, 0.5);
  o.activations = opt::ActivationPlace::device;
  prune_model(*a, ids, o);
  o.activations = opt::ActivationPlace::host;
  prune_model(*b, ids, o);
  o.activations = opt::ActivationPlace::device;
  o.forward_batch = 16;  // one chunk: the Hessians differ only by summation order
  prune_model(*c, ids, o);
  const auto la = a->linear_layers(), lb = b->linear_layers(), lc = c->linear_layers();
  int64_t agree = 0, total = 0;
  for (size_t k = 0; k < la.size(); ++k) {
    EXPECT_TRUE(test::same_bytes(la[k].second->weight_mask, lb[k].second->weight_mask)) << la[k].first;
    EXPECT_TRUE(test::same_bytes(la[k].second->weight.data(), lb[k].second->weight.data())) << la[k].first;
    const auto ka = la[k].second->weight_mask.to_vector<uint8_t>(), kc = lc[k].second->weight_mask.to_vector<uint8_t>();
    for (size_t e = 0; e < ka.size(); ++e) agree += ka[e] == kc[e];
    total += int64_t(ka.size());
  }
  EXPECT_GE(double(agree) / double(total), 0.99);
}

TEST(SequentialPrune, MagnitudeNeedsNoCalibrationAndGivesTheSameMasksWithIt) {
  auto a = make_model(19), b = make_model(19);
  const PruneReport without = prune_model(*a, Tensor(), options(PruneMethod::magnitude, 0.5));
  const PruneReport with = prune_model(*b, random_ids(kSamples, kSeqlen, 512, 20), options(PruneMethod::magnitude, 0.5));
  EXPECT_TRUE(std::isnan(without.reconstruction_error));
  EXPECT_TRUE(std::isnan(without.matrices[0].reconstruction_error));
  EXPECT_EQ(without.nsamples, 0);
  EXPECT_TRUE(std::isfinite(with.reconstruction_error));
  EXPECT_EQ(with.nsamples, kSamples);
  EXPECT_EQ(with.seqlen, kSeqlen);
  const auto la = a->linear_layers(), lb = b->linear_layers();
  for (size_t k = 0; k < la.size(); ++k)
    EXPECT_TRUE(test::same_bytes(la[k].second->weight_mask, lb[k].second->weight_mask)) << la[k].first;
}

// ---- options, hooks, model state -------------------------------------------------------------------------

TEST(SequentialPrune, RestoresTrainingModeAndObserversAndLogsEachLayer) {
  auto model = make_model(21);
  model->train();
  int64_t calls = 0;
  model->layer(1).fc1.input_observer = [&](const Tensor&) { ++calls; };
  std::vector<std::string> lines;
  SequentialPruneOptions o = options(PruneMethod::wanda, 0.5);
  o.log = [&](const std::string& line) { lines.push_back(line); };
  const Tensor ids = random_ids(kSamples, kSeqlen, 512, 22);
  prune_model(*model, ids, o);
  EXPECT_TRUE(model->is_training());
  EXPECT_EQ(calls, 0);  // replaced while pruning
  for (auto& [name, lin] : model->linear_layers())
    if (lin != &model->layer(1).fc1) {
      EXPECT_FALSE(bool(lin->input_observer)) << name;
    }
  {
    autograd::NoGradGuard no_grad;
    model->forward(ids.narrow(0, 0, 2));
  }
  EXPECT_EQ(calls, 1);  // and put back afterwards
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NE(lines[2].find("layer 3/3"), std::string::npos) << lines[2];
  EXPECT_NE(lines[2].find("sparsity 0.5000"), std::string::npos) << lines[2];
}

TEST(SequentialPrune, BadArgumentsAreErrors) {
  auto model = make_model(23);
  const Tensor ids = random_ids(4, 16, 512, 24);
  expect_error([&] { prune_model(*model, Tensor(), options(PruneMethod::wanda, 0.5)); },
               "wanda needs calibration ids");
  expect_error([&] { prune_model(*model, Tensor(), options(PruneMethod::sparsegpt, 0.5)); },
               "sparsegpt needs calibration ids");
  expect_error([&] { prune_model(*model, ids.to(DType::f32), options(PruneMethod::wanda, 0.5)); },
               "must be a non-empty i32/i64 [nsamples, seqlen]");
  expect_error([&] { prune_model(*model, random_ids(2, 65, 512, 1), options(PruneMethod::wanda, 0.5)); },
               "windows of 65 tokens are longer than the model's context 64");
  SequentialPruneOptions o = options(PruneMethod::sparsegpt, 0.5);
  o.forward_batch = 0;
  expect_error([&] { prune_model(*model, ids, o); }, "forward_batch 0");
  o = options(PruneMethod::sparsegpt, 0.5);
  o.pattern.sparsity = 1.5;
  EXPECT_THROW(prune_model(*model, ids, o), Error);
  expect_error([] { parse_prune_method("obs"); }, "allowed: magnitude, wanda, sparsegpt");
  EXPECT_EQ(parse_prune_method("wanda"), PruneMethod::wanda);
  EXPECT_STREQ(prune_method_name(PruneMethod::sparsegpt), "sparsegpt");
  for (auto& [name, lin] : model->linear_layers()) EXPECT_FALSE(lin->has_mask()) << name;  // nothing half-done

  // A Linear whose forward uses an adapter's effective weight cannot have W pruned underneath it.
  struct IdentityAdapter : nn::LinearAdapter {
    Variable effective_weight(const Variable& weight, const Tensor&) const override { return weight; }
    std::string kind() const override { return "identity"; }
  };
  model->layer(1).fc2.attach_adapter(std::make_shared<IdentityAdapter>());
  expect_error([&] { prune_model(*model, ids, options(PruneMethod::magnitude, 0.5)); },
               "model.decoder.layers.1.fc2 has a identity adapter attached; merge or detach it before pruning");
}

TEST(SequentialPrune, PostLayerNormModelsWithProjectionsArePrunedToo) {
  OptConfig c = opt::opt_preset("tiny-350m");
  auto model = make_model(25, Device::cpu, c);
  const Tensor ids = random_ids(8, 24, 512, 26);
  const PruneReport r = prune_model(*model, ids, options(PruneMethod::sparsegpt, 0.5));
  EXPECT_EQ(r.matrices.size(), 12u);
  for (auto& [name, lin] : model->linear_layers())
    EXPECT_EQ(zeros(lin->weight_mask), pruned_count(lin->weight_mask.numel(), 0.5)) << name;
  EXPECT_FALSE(model->project_in->has_mask());
  EXPECT_FALSE(model->project_out->has_mask());
  autograd::NoGradGuard no_grad;
  for (float v : model->forward(ids).data().to_vector<float>()) ASSERT_TRUE(std::isfinite(v));
}

// ---- (g) end to end: SparseGPT beats magnitude on a model that has learned WikiText-2 ---------------------

// WikiText-2 as OPT ids, remapped to a 512-id vocabulary so a tiny model trains in seconds: the 509 most
// frequent train ids become 3..511 in order of frequency, BOS stays 2, every other id becomes 0; id 1 (OPT's
// padding row, which gets no gradient) is never used.
struct SmallVocabWikiText {
  std::vector<int32_t> train, test;
};

std::optional<SmallVocabWikiText> load_small_vocab_wikitext(size_t train_rows, size_t test_rows) {
  const std::string data = pt::test::source_dir() + "/data";
  const std::string train_path = corpus::default_wikitext_path(data, corpus::WikiTextSplit::Train);
  const std::string test_path = corpus::default_wikitext_path(data, corpus::WikiTextSplit::Test);
  for (const std::string& p : {train_path, test_path, data + "/opt-tokenizer/vocab.json"})
    if (!std::filesystem::exists(p)) return std::nullopt;
  corpus::Gpt2Tokenizer tok(data + "/opt-tokenizer/vocab.json", data + "/opt-tokenizer/merges.txt");
  corpus::WikiTextFile train = corpus::read_wikitext_split(train_path, corpus::WikiTextSplit::Train);
  corpus::WikiTextFile test = corpus::read_wikitext_split(test_path, corpus::WikiTextSplit::Test);
  train.rows.resize(std::min(train.rows.size(), train_rows));
  test.rows.resize(std::min(test.rows.size(), test_rows));
  SmallVocabWikiText out{tok.encode(corpus::sparsegpt_train_text(train)), tok.encode(corpus::sparsegpt_eval_text(test))};
  std::unordered_map<int32_t, int64_t> freq;
  for (int32_t t : out.train) ++freq[t];
  std::vector<std::pair<int64_t, int32_t>> by_freq;
  for (auto [id, n] : freq)
    if (id != 2) by_freq.push_back({-n, id});
  std::sort(by_freq.begin(), by_freq.end());
  std::unordered_map<int32_t, int32_t> remap{{2, 2}};
  for (size_t r = 0; r < std::min<size_t>(509, by_freq.size()); ++r) remap[by_freq[r].second] = int32_t(3 + r);
  for (auto* stream : {&out.train, &out.test})
    for (int32_t& t : *stream) t = remap.count(t) ? remap[t] : 0;
  return out;
}

// A model this small and this briefly trained is robust to 50% sparsity under every method: their perplexities
// differ by less than 1.5%, and which is lowest changes with the training seed (magnitude won on 3 of 5 seeds
// tried). So 50% checks that SparseGPT stays close to lossless, and the order of the methods is checked at 80%,
// where magnitude clearly hurts (on those 5 seeds SparseGPT lost 2-45% of what magnitude lost).
TEST(SequentialPrune, EndToEndSparseGptKeepsATrainedModelBetterThanMagnitude) {
  const auto text = load_small_vocab_wikitext(6000, 300);
  if (!text) GTEST_SKIP() << "WikiText-2 or the OPT tokenizer is missing under data/ (ln -s /work/shared/data data)";
  const auto t0 = std::chrono::steady_clock::now();
  OptConfig c = opt::opt_preset("tiny");  // 2 layers, hidden 64, ffn 256, vocab 512, context 64
  c.dropout = 0.0;
  OptForCausalLM model(c, Device::cpu, 31);

  // Train: AdamW (unfused), batches of 16 random windows of 64 tokens, lr 5e-3 after 20 warm-up steps.
  std::vector<nn::AdamWParamGroup> groups(1);
  for (autograd::Variable* p : model.parameters()) groups[0].params.push_back(*p);
  nn::AdamW adamw(std::move(groups), nn::AdamWConfig{0.9, 0.99, 1e-8, "unfused"});
  std::mt19937_64 rng(32);
  std::uniform_int_distribution<int64_t> start(0, int64_t(text->train.size()) - 65);
  const int64_t steps = 200, B = 16, T = 64;
  for (int64_t step = 0; step < steps; ++step) {
    std::vector<int64_t> batch(static_cast<size_t>(B * T));
    for (int64_t b = 0; b < B; ++b) {
      const int64_t s = start(rng);
      for (int64_t t = 0; t < T; ++t) batch[size_t(b * T + t)] = text->train[size_t(s + t)];
    }
    const Tensor ids = Tensor::from_vector(batch, {B, T});
    model.loss(ids, ids).backward();
    adamw.step(5e-3 * std::min(1.0, double(step + 1) / 20.0));
    adamw.zero_grad();
  }
  const double train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  opt::PerplexityOptions po;
  po.seqlen = 64;
  po.batch_size = 16;
  po.show_progress = false;
  const double dense = opt::evaluate_perplexity(model, text->test, po).perplexity;

  const Tensor calibration = sample_calibration_windows(text->train, 64, 64, 0);
  std::map<std::pair<double, PruneMethod>, double> ppl;
  for (double sparsity : {0.5, 0.8})
    for (PruneMethod method : {PruneMethod::magnitude, PruneMethod::wanda, PruneMethod::sparsegpt}) {
      OptForCausalLM copy(c, Device::cpu, 0);
      copy.load_state_dict(model.state_dict());
      SequentialPruneOptions o = options(method, sparsity);
      o.forward_batch = 16;
      prune_model(copy, calibration, o);
      ppl[{sparsity, method}] = opt::evaluate_perplexity(copy, text->test, po).perplexity;
    }
  const double total_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("tiny OPT trained %lld steps on WikiText-2 (%zu train / %zu test ids, %.1fs); test perplexity: dense %.3f\n",
              (long long)steps, text->train.size(), text->test.size(), train_seconds, dense);
  for (double s : {0.5, 0.8})
    std::printf("  %.0f%%: sparsegpt %.3f, wanda %.3f, magnitude %.3f\n", 100 * s, ppl[{s, PruneMethod::sparsegpt}],
                ppl[{s, PruneMethod::wanda}], ppl[{s, PruneMethod::magnitude}]);
  std::printf("  (%.1fs in all)\n", total_seconds);

  EXPECT_LT(dense, 40.0) << "the model should have learned more than token frequencies";
  const double sgpt50 = ppl[{0.5, PruneMethod::sparsegpt}];
  const double sgpt80 = ppl[{0.8, PruneMethod::sparsegpt}], mag80 = ppl[{0.8, PruneMethod::magnitude}];
  EXPECT_LT(sgpt50, 1.02 * dense) << "SparseGPT at 50% should be close to lossless";
  EXPECT_LT(sgpt80, mag80);
  EXPECT_LT(sgpt80 - dense, 0.75 * (mag80 - dense)) << "SparseGPT should lose well under magnitude's perplexity";
}

// ---- CUDA ---------------------------------------------------------------------------------------------------

TEST(CudaSequentialPrune, CpuAndCudaDriversAgree) {
  PT_SKIP_IF_NO_CUDA();
  const Tensor ids = random_ids(kSamples, kSeqlen, 512, 40);
  for (PruneMethod method : {PruneMethod::magnitude, PruneMethod::wanda, PruneMethod::sparsegpt}) {
    for (const std::string kernel : {"unfused", "fused"}) {  // the shorthand: fused is the reference loops on the CPU
      SCOPED_TRACE(std::string(prune_method_name(method)) + " " + kernel);
      auto cpu = make_model(39, Device::cpu), gpu = make_model(39, Device::cuda);
      SequentialPruneOptions o = options(method, 0.5);
      kernels::ScopedSelection shorthand;
      shorthand.shorthand(kernel);
      const PruneReport rc = prune_model(*cpu, ids, o);
      const PruneReport rg = prune_model(*gpu, ids, o);
      const auto lc = cpu->linear_layers(), lg = gpu->linear_layers();
      int64_t agree = 0, total = 0;
      double max_diff = 0, scale = 0;
      for (size_t k = 0; k < lc.size(); ++k) {
        const auto kc = lc[k].second->weight_mask.to_vector<uint8_t>();
        const auto kg = lg[k].second->weight_mask.to_vector<uint8_t>();
        const auto wc = lc[k].second->weight.data().to_vector<double>();
        const auto wg = lg[k].second->weight.data().to_vector<double>();
        EXPECT_EQ(zeros(lg[k].second->weight_mask), expected_pruned(method, lg[k].second->weight_mask, 0.5)) << lc[k].first;
        for (size_t e = 0; e < kc.size(); ++e) {
          agree += kc[e] == kg[e];
          if (kc[e] && kg[e]) max_diff = std::max(max_diff, std::abs(wc[e] - wg[e]));
          scale = std::max(scale, std::abs(wc[e]));
        }
        total += int64_t(kc.size());
      }
      EXPECT_GE(double(agree) / double(total), 0.999);
      EXPECT_LT(max_diff, 1e-3 * scale);
      EXPECT_NEAR(rg.reconstruction_error, rc.reconstruction_error, 1e-2 * rc.reconstruction_error);
    }
  }
}

TEST(CudaSequentialPrune, OffloadedActivationsGiveIdenticalResults) {
  PT_SKIP_IF_NO_CUDA();
  const Tensor ids = random_ids(kSamples, kSeqlen, 512, 42);
  auto a = make_model(41, Device::cuda), b = make_model(41, Device::cuda);
  SequentialPruneOptions o = options(PruneMethod::sparsegpt, 0.5);
  o.activations = opt::ActivationPlace::device;
  prune_model(*a, ids, o);
  o.activations = opt::ActivationPlace::host;
  prune_model(*b, ids, o);
  const auto la = a->linear_layers(), lb = b->linear_layers();
  for (size_t k = 0; k < la.size(); ++k) {
    EXPECT_TRUE(test::same_bytes(la[k].second->weight_mask.to(Device::cpu), lb[k].second->weight_mask.to(Device::cpu)));
    EXPECT_TRUE(test::same_bytes(la[k].second->weight.data().to(Device::cpu), lb[k].second->weight.data().to(Device::cpu)));
  }
}

}  // namespace
}  // namespace pt::prune
