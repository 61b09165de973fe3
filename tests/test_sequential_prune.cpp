// The sequential layer-by-layer driver on small random OPT models, checked against computations written here:
// layer inputs and Hessians rebuilt by hand (LayerNorm and XᵀX in double), exact sparsity per matrix, untouched
// non-pruned tensors, mask persistence across an iterative schedule, N:M groups, the reconstruction-error order
// of the methods, offloading, bad arguments.
#include "tests/sequential_prune_fixtures.h"

namespace pt::prune {
namespace {

using namespace sequential_fixtures;

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

}  // namespace
}  // namespace pt::prune
