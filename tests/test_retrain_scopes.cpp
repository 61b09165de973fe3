// Retraining scopes on a pruned tiny OPT: each scope trains exactly its parameters (everything else stays bit
// for bit), counts them like a hand count, and leaves every pruned weight at exactly +0.0 after finish_scope.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "autograd/functions.h"
#include "nn/checkpoint.h"
#include "nn/lora.h"
#include "opt/hf_checkpoint.h"
#include "opt/model.h"
#include "test_util.h"
#include "train/scopes.h"
#include "train/trainer.h"

namespace pt::test {
namespace {

using train::RetrainScope;

constexpr RetrainScope kAllScopes[] = {RetrainScope::none,      RetrainScope::full,    RetrainScope::biases,
                                       RetrainScope::layernorm, RetrainScope::biases_layernorm,
                                       RetrainScope::lm_head,   RetrainScope::mask_lora, RetrainScope::scale_lora};


std::unique_ptr<opt::OptForCausalLM> pruned_tiny_model(uint64_t seed, Device device = Device::cpu) {
  opt::OptConfig c = opt::opt_preset("tiny");
  c.dropout = 0.0;
  auto m = std::make_unique<opt::OptForCausalLM>(c, device, seed);
  uint64_t k = 0;
  for (auto& [_, lin] : m->linear_layers())  // about half of every Linear pruned
    lin->set_mask(compare_scalar(random_tensor(lin->weight.shape(), 500 + k++, 0.0, 1.0), 0.5, CompareOp::gt));
  return m;
}

train::TrainOptions few_steps() {
  train::TrainOptions o;
  o.steps = 3;
  o.batch_size = 2;
  o.seqlen = 16;
  o.schedule.base_lr = 5e-3;
  o.weight_decay = 0.01;
  o.adamw.kernel = "reference";
  o.seed = 3;
  o.show_progress = false;
  o.log = [](const std::string&) {};
  return o;
}

std::map<std::string, Tensor> snapshot(const opt::OptForCausalLM& m) {
  std::map<std::string, Tensor> out;
  for (auto& [n, p] : m.named_parameters()) out[n] = p->data().clone();
  return out;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}
bool is_layer_norm(const std::string& n) { return n.find("layer_norm.") != std::string::npos; }

int64_t pruned_count(opt::OptForCausalLM& m) {
  int64_t n = 0;
  for (auto& [_, lin] : m.linear_layers())
    for (int64_t i = 0; i < lin->weight_mask.numel(); ++i) n += lin->weight_mask.data<uint8_t>()[i] == 0;
  return n;
}

// Every pruned weight of every Linear is +0.0.
void expect_pruned_weights_positive_zero(opt::OptForCausalLM& m) {
  for (auto& [name, lin] : m.linear_layers()) {
    const Tensor w = lin->weight.data().to(Device::cpu), keep = lin->weight_mask.to(Device::cpu);
    int64_t bad = 0;
    for (int64_t i = 0; i < w.numel(); ++i)
      if (keep.data<uint8_t>()[i] == 0) {
        const float v = w.data<float>()[i];
        bad += !(v == 0.0f && !std::signbit(v));
      }
    EXPECT_EQ(bad, 0) << name;
  }
}

// What each scope may change, by parameter name (the model's names before the scope was prepared).
bool in_scope(RetrainScope s, const std::string& name, const std::set<std::string>& lora_targets) {
  const bool bias = ends_with(name, ".bias"), ln = is_layer_norm(name);
  switch (s) {
    case RetrainScope::none: return false;
    case RetrainScope::full: return true;
    case RetrainScope::biases: return bias;
    case RetrainScope::layernorm: return ln;
    case RetrainScope::biases_layernorm: return bias || ln;
    case RetrainScope::lm_head: return false;  // lm_head.weight is new: checked on its own
    case RetrainScope::mask_lora:
    case RetrainScope::scale_lora:
      for (const auto& t : lora_targets)
        if (ends_with(name, "." + t + ".weight")) return true;
      return false;
  }
  return false;
}

// The trained-element count of each scope, by hand from the config.
int64_t hand_count(RetrainScope s, opt::OptForCausalLM& m, int64_t rank) {
  const opt::OptConfig& c = m.config();
  const int64_t C = c.hidden_size, F = c.ffn_dim, L = c.num_hidden_layers;
  const int64_t linear_biases = L * (4 * C + F + C), ln_params = (2 * L + 1) * 2 * C;  // tiny: pre-LN, final LN
  switch (s) {
    case RetrainScope::none: return 0;
    case RetrainScope::full: return m.num_parameters() - pruned_count(m);
    case RetrainScope::biases: return linear_biases + ln_params / 2;
    case RetrainScope::layernorm: return ln_params;
    case RetrainScope::biases_layernorm: return linear_biases + ln_params;
    case RetrainScope::lm_head: return c.vocab_size * c.word_embed_proj_dim;
    case RetrainScope::mask_lora:
    case RetrainScope::scale_lora: return L * rank * (4 * (C + C) + (C + F) + (F + C));
  }
  return -1;
}

TEST(RetrainScope, NamesRoundTripAndUnknownNamesListTheChoices) {
  for (RetrainScope s : kAllScopes) EXPECT_EQ(train::parse_retrain_scope(train::retrain_scope_name(s)), s);
  EXPECT_EQ(train::parse_retrain_scope("biases+layernorm"), RetrainScope::biases_layernorm);
  EXPECT_EQ(train::parse_retrain_scope("mask-lora"), RetrainScope::mask_lora);
  expect_error([] { train::parse_retrain_scope("lora"); },
               "unknown retrain scope 'lora' (allowed: none, full, biases, layernorm, biases+layernorm, lm_head, "
               "mask-lora, scale-lora)");
  expect_error([] { train::parse_retrain_scope("mask_lora"); }, "unknown retrain scope");
}

class RetrainScopeTraining : public ::testing::TestWithParam<RetrainScope> {};

TEST_P(RetrainScopeTraining, TrainsExactlyItsParametersAndKeepsPrunedWeightsZero) {
  const RetrainScope scope = GetParam();
  auto m = pruned_tiny_model(1);
  const auto before = snapshot(*m);
  const int64_t total = m->num_parameters();
  const int64_t expected_trained = hand_count(scope, *m, 4);

  train::LoraOptions lora;
  lora.rank = 4;
  lora.alpha = 8;
  const train::ScopeSelection sel = train::prepare_scope(*m, scope, lora);
  EXPECT_EQ(sel.total, total);
  EXPECT_EQ(sel.trained, expected_trained);
  EXPECT_DOUBLE_EQ(sel.fraction(), double(expected_trained) / double(total));
  if (scope == RetrainScope::none) {
    EXPECT_TRUE(sel.params.empty());
  } else {
    ASSERT_FALSE(sel.params.empty());
    const auto ids = learnable_token_stream(4000, m->config().vocab_size, 9);
    const train::TrainResult r = train::train_model(*m, sel.params, ids, {}, few_steps());
    EXPECT_EQ(r.trained_parameters, sel.trained);
    ASSERT_EQ(r.history.size(), 3u);
    for (const auto& p : sel.params) {  // decay for weights and adapters, none for biases and LayerNorm
      const bool no_decay = ends_with(p.name, ".bias") || is_layer_norm(p.name);
      EXPECT_EQ(p.weight_decay, !no_decay) << p.name;
    }
  }
  train::finish_scope(*m, scope);

  // After finishing: the model's parameters are the original ones (plus an untied head for lm_head).
  const auto after = m->named_parameters();
  EXPECT_EQ(after.size(), before.size() + (scope == RetrainScope::lm_head ? 1 : 0));
  const std::set<std::string> targets(lora.targets.begin(), lora.targets.end());
  for (auto& [name, p] : after) {
    if (name == "lm_head.weight") {
      EXPECT_EQ(scope, RetrainScope::lm_head);
      EXPECT_FALSE(same_bytes(p->data(), before.at("model.decoder.embed_tokens.weight"))) << "the head was not trained";
      continue;
    }
    ASSERT_TRUE(before.count(name)) << "new parameter " << name;
    if (in_scope(scope, name, targets)) EXPECT_FALSE(same_bytes(p->data(), before.at(name))) << name << " did not change";
    else EXPECT_TRUE(same_bytes(p->data(), before.at(name))) << name << " changed outside the scope";
  }
  for (auto& [_, lin] : m->linear_layers()) EXPECT_FALSE(lin->has_adapter());
  expect_pruned_weights_positive_zero(*m);
}

INSTANTIATE_TEST_SUITE_P(AllScopes, RetrainScopeTraining, ::testing::ValuesIn(kAllScopes),
                         [](const ::testing::TestParamInfo<RetrainScope>& info) {
                           std::string n = train::retrain_scope_name(info.param);
                           for (char& ch : n)
                             if (ch == '+' || ch == '-') ch = '_';
                           return n;
                         });

TEST(RetrainScope, AdaptersAndTheUntiedHeadLeaveTheLogitsUnchangedAtInit) {
  auto m = pruned_tiny_model(2);
  const Tensor ids = Tensor::from_vector<int64_t>({5, 9, 3, 7, 1, 2, 8, 4, 6, 10, 11, 12}, {2, 6});
  const Tensor plain = m->forward(ids).data();
  for (RetrainScope s : {RetrainScope::mask_lora, RetrainScope::scale_lora, RetrainScope::lm_head}) {
    SCOPED_TRACE(train::retrain_scope_name(s));
    train::prepare_scope(*m, s);  // rank 16: scale-lora's B·A is exactly one
    EXPECT_TRUE(tensors_equal(m->forward(ids).data(), plain));
    train::finish_scope(*m, s);
    EXPECT_TRUE(tensors_equal(m->forward(ids).data(), plain));
  }
}

TEST(RetrainScope, LoraTargetsChooseTheLayersAndNameTheParameters) {
  auto m = pruned_tiny_model(3);
  const auto before = snapshot(*m);
  train::LoraOptions lora;
  lora.rank = 2;
  lora.targets = {"q_proj", "fc2"};
  const train::ScopeSelection sel = train::prepare_scope(*m, RetrainScope::mask_lora, lora);
  const int64_t C = 64, F = 256;
  EXPECT_EQ(sel.trained, 2 * 2 * ((C + C) + (F + C)));
  std::vector<std::string> names;
  for (const auto& p : sel.params) {
    names.push_back(p.name);
    EXPECT_EQ(p.var->name(), p.name);
    EXPECT_FALSE(p.keep.defined());
  }
  EXPECT_EQ(names, (std::vector<std::string>{
                       "model.decoder.layers.0.self_attn.q_proj.lora_A", "model.decoder.layers.0.self_attn.q_proj.lora_B",
                       "model.decoder.layers.0.fc2.lora_A", "model.decoder.layers.0.fc2.lora_B",
                       "model.decoder.layers.1.self_attn.q_proj.lora_A", "model.decoder.layers.1.self_attn.q_proj.lora_B",
                       "model.decoder.layers.1.fc2.lora_A", "model.decoder.layers.1.fc2.lora_B"}));
  EXPECT_TRUE(m->state_dict().count("model.decoder.layers.1.fc2.lora_B"));
  // A second prepare without finishing is refused.
  expect_error([&] { train::prepare_scope(*m, RetrainScope::scale_lora, lora); }, "still has a mask-lora adapter");
  expect_error([&] { train::finish_scope(*m, RetrainScope::biases); }, "that this scope does not attach");
  train::train_model(*m, sel.params, learnable_token_stream(3000, 512, 4), {}, few_steps());
  train::finish_scope(*m, RetrainScope::mask_lora);
  for (auto& [name, p] : m->named_parameters()) {
    const bool target = ends_with(name, "q_proj.weight") || ends_with(name, "fc2.weight");
    EXPECT_EQ(same_bytes(p->data(), before.at(name)), !target) << name;
  }
  expect_pruned_weights_positive_zero(*m);
}

TEST(RetrainScope, BadLoraOptionsAreRefusedBeforeAnythingIsAttached) {
  auto m = pruned_tiny_model(4);
  train::LoraOptions lora;
  lora.targets = {"q_proj", "gate_proj"};
  expect_error([&] { train::prepare_scope(*m, RetrainScope::mask_lora, lora); },
               "unknown target layer 'gate_proj' (choose from q_proj, k_proj, v_proj, out_proj, fc1, fc2)");
  lora = {};
  lora.rank = 0;
  expect_error([&] { train::prepare_scope(*m, RetrainScope::scale_lora, lora); }, "rank must be at least 1");
  for (auto& [_, lin] : m->linear_layers()) EXPECT_FALSE(lin->has_adapter());
}

TEST(RetrainScope, FinishRefusesAPrunedWeightThatIsNotZero) {
  auto m = pruned_tiny_model(5);
  train::finish_scope(*m, RetrainScope::none);  // a freshly pruned model passes
  nn::Linear& fc1 = m->layer(1).fc1;
  int64_t pruned_at = 0;
  while (fc1.weight_mask.data<uint8_t>()[pruned_at] != 0) ++pruned_at;
  fc1.weight.data().data<float>()[pruned_at] = -0.0f;  // a signed zero is still zero
  train::assert_pruned_weights_zero(*m);
  fc1.weight.data().data<float>()[pruned_at] = 1e-30f;
  expect_error([&] { train::finish_scope(*m, RetrainScope::full); },
               "model.decoder.layers.1.fc1.weight has 1 nonzero entries where its mask is 0");
  fc1.weight.data().data<float>()[pruned_at] = std::nanf("");
  expect_error([&] { train::assert_pruned_weights_zero(*m); }, "model.decoder.layers.1.fc1.weight has 1 nonzero");
}

// Untying on Hugging Face weights: the same logits, and the tied embedding's gradient splits into the
// lookup part (stays with the embedding) and the head part (goes to lm_head.weight).
TEST(RetrainScope, UntiedHeadOnHuggingFaceWeightsSplitsTheTiedGradient) {
  for (const char* fixture : {"tiny", "tiny-350m"}) {
    SCOPED_TRACE(fixture);
    const opt::HfCheckpoint ck(pt::test::source_dir() + "/tests/golden/opt/" + fixture);
    auto tied = opt::OptForCausalLM::from_hf(ck, Device::cpu);
    opt::OptForCausalLM untied(ck.config(), Device::cpu, 99);
    untied.untie_lm_head();
    untied.load_hf(ck);  // lm_head.weight is served from the embedding when the files omit it
    untied.eval();
    EXPECT_TRUE(same_bytes(untied.lm_head->weight.data(), tied->embed_tokens.weight.data()));
    const Tensor ids = Tensor::from_vector<int64_t>({2, 45, 7, 300, 11, 9, 81, 5, 64, 33}, {2, 5});
    autograd::Variable lt = tied->loss(ids, ids), lu = untied.loss(ids, ids);
    EXPECT_TRUE(tensors_equal(lu.data(), lt.data()));
    lt.backward();
    lu.backward();
    const Tensor split = pt::add(untied.embed_tokens.weight.grad(), untied.lm_head->weight.grad());
    PT_EXPECT_CLOSE(split, tied->embed_tokens.weight.grad(), kReductionF32);
    EXPECT_GT(pt::sum_all(pt::abs(untied.lm_head->weight.grad())).item(), 0.0);
  }
}

// The GPU path: adapters with bf16 autocast and the fused masked AdamW; the same guarantees hold.
TEST(CudaRetrainScope, LoraScopesTrainWithAutocastAndKeepPrunedWeightsZero) {
  PT_SKIP_IF_NO_CUDA();
  for (RetrainScope scope : {RetrainScope::mask_lora, RetrainScope::scale_lora}) {
    SCOPED_TRACE(train::retrain_scope_name(scope));
    auto m = pruned_tiny_model(8, Device::cuda);
    std::map<std::string, Tensor> before;
    for (auto& [n, p] : m->named_parameters()) before[n] = p->data().to(Device::cpu);
    const train::ScopeSelection sel = train::prepare_scope(*m, scope);
    train::TrainOptions o = few_steps();
    o.adamw.kernel = "fused";
    o.autocast_bf16 = true;
    const train::TrainResult r = train::train_model(*m, sel.params, learnable_token_stream(3000, 512, 6), {}, o);
    for (const auto& st : r.history) EXPECT_TRUE(std::isfinite(st.loss));
    train::finish_scope(*m, scope);
    for (auto& [name, p] : m->named_parameters())
      EXPECT_EQ(same_bytes(p->data().to(Device::cpu), before.at(name)), !ends_with(name, "proj.weight") &&
                                                                            !ends_with(name, "fc1.weight") &&
                                                                            !ends_with(name, "fc2.weight"))
          << name;
    expect_pruned_weights_positive_zero(*m);
  }
}

// PERP's head: a plain LoRA on the untied head, merged into it; the embedding and everything else untouched.
TEST(RetrainScope, LmHeadLoraMergesALowRankUpdateIntoTheUntiedHead) {
  auto m = pruned_tiny_model(9);
  const auto before = snapshot(*m);
  const Tensor ids = Tensor::from_vector<int64_t>({5, 9, 3, 7, 1, 2, 8, 4}, {2, 4});
  const Tensor plain = m->forward(ids).data();
  train::LoraOptions lora;
  lora.lm_head_rank = 4;
  lora.alpha = 8;  // scaling 2
  const train::ScopeSelection sel = train::prepare_scope(*m, RetrainScope::lm_head, lora);
  EXPECT_EQ(sel.trained, 4 * (512 + 64));
  ASSERT_EQ(sel.params.size(), 2u);
  EXPECT_EQ(sel.params[0].name, "lm_head.lora_A");
  EXPECT_EQ(sel.params[1].name, "lm_head.lora_B");
  EXPECT_TRUE(tensors_equal(m->forward(ids).data(), plain));  // B = 0 at init
  train::train_model(*m, sel.params, learnable_token_stream(3000, 512, 7), {}, few_steps());
  const Tensor A = sel.params[0].var->data().clone(), B = sel.params[1].var->data().clone();
  train::finish_scope(*m, RetrainScope::lm_head);
  EXPECT_FALSE(m->lm_head->has_adapter());
  // head = E + 2·B·A, by loops.
  const Tensor E = before.at("model.decoder.embed_tokens.weight"), head = m->lm_head->weight.data();
  Tensor want = Tensor::zeros({512, 64}, DType::f64);
  for (int64_t v = 0; v < 512; ++v)
    for (int64_t e = 0; e < 64; ++e) {
      double ba = 0;
      for (int64_t k = 0; k < 4; ++k) ba += double(B.data<float>()[v * 4 + k]) * A.data<float>()[k * 64 + e];
      want.data<double>()[v * 64 + e] = E.data<float>()[v * 64 + e] + 2.0 * ba;
    }
  PT_EXPECT_CLOSE(head.to(DType::f64), want, kElementwiseF32);
  EXPECT_FALSE(same_bytes(head, E));
  for (auto& [name, p] : m->named_parameters()) {
    if (name == "lm_head.weight") continue;
    EXPECT_TRUE(same_bytes(p->data(), before.at(name))) << name;
  }
  expect_error([&] { lora.lm_head_rank = -1; train::prepare_scope(*m, RetrainScope::lm_head, lora); },
               "lm_head_rank must be 0");
}

class RetrainScopeCheckpoint : public TempDirTest {};

// The app resumes a LoRA stage by preparing the same scope and loading train_model's checkpoint; an untied
// head needs untie_lm_head before its checkpoint loads.
TEST_F(RetrainScopeCheckpoint, AdapterAndUntiedHeadCheckpointsLoadIntoAPreparedModel) {
  train::TrainOptions o = few_steps();
  o.checkpoint_path = path("lora.h5");
  auto a = pruned_tiny_model(6);
  const auto sel = train::prepare_scope(*a, RetrainScope::scale_lora);
  train::train_model(*a, sel.params, learnable_token_stream(3000, 512, 5), {}, o);
  const nn::Checkpoint ck = nn::load_checkpoint(o.checkpoint_path);

  auto fresh = pruned_tiny_model(6);
  expect_error([&] { train::load_model_checkpoint(*fresh, ck); }, "lora_A");
  train::prepare_scope(*fresh, RetrainScope::scale_lora);
  train::load_model_checkpoint(*fresh, ck);
  const auto pa = a->named_parameters(), pb = fresh->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(same_bytes(pb[i].second->data(), pa[i].second->data())) << pa[i].first;

  // Untied head: the checkpoint holds lm_head.weight, so only an untied model takes it.
  auto h = pruned_tiny_model(7);
  train::prepare_scope(*h, RetrainScope::lm_head);
  EXPECT_FALSE(h->lm_head_tied());
  EXPECT_EQ(h->named_parameters().back().first, "lm_head.weight");
  h->lm_head->weight.data().copy_(pt::mul_scalar(h->lm_head->weight.data(), 0.5));  // its own storage now
  const nn::Checkpoint hk = train::model_checkpoint(*h);
  auto tied = pruned_tiny_model(7);
  expect_error([&] { train::load_model_checkpoint(*tied, hk); }, "lm_head.weight");
  tied->untie_lm_head();
  train::load_model_checkpoint(*tied, hk);
  EXPECT_TRUE(same_bytes(tied->lm_head->weight.data(), h->lm_head->weight.data()));
  EXPECT_TRUE(same_bytes(tied->embed_tokens.weight.data(), h->embed_tokens.weight.data()));
  EXPECT_FALSE(same_bytes(tied->embed_tokens.weight.data(), tied->lm_head->weight.data()));
}

}  // namespace
}  // namespace pt::test
