#include "train/scopes.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <set>
#include <sstream>
#include <utility>

#include "nn/layer_norm.h"
#include "nn/lora.h"
#include "tensor/error.h"
#include "tensor/nvtx.h"
#include "tensor/ops.h"

namespace pt::train {
namespace {

constexpr std::pair<RetrainScope, const char*> kScopeNames[] = {
    {RetrainScope::none, "none"},
    {RetrainScope::full, "full"},
    {RetrainScope::biases, "biases"},
    {RetrainScope::layernorm, "layernorm"},
    {RetrainScope::biases_layernorm, "biases+layernorm"},
    {RetrainScope::lm_head, "lm_head"},
    {RetrainScope::mask_lora, "mask-lora"},
    {RetrainScope::scale_lora, "scale-lora"},
};

const char* const kLoraTargets[] = {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"};

std::string join_names(const auto& names) {
  std::ostringstream os;
  for (const auto& n : names) os << (os.tellp() ? ", " : "") << n;
  return os.str();
}

// The scopes that may attach adapters (lm_head only with LoraOptions::lm_head_rank > 0).
bool attaches_adapters(RetrainScope s) {
  return s == RetrainScope::mask_lora || s == RetrainScope::scale_lora || s == RetrainScope::lm_head;
}

// Every Linear of the model with its full name: the decoder layers' six, the projections, an untied head.
std::vector<std::pair<std::string, nn::Linear*>> all_linears(opt::OptForCausalLM& model) {
  std::vector<std::pair<std::string, nn::Linear*>> out;
  for (auto& [name, m] : model.named_modules())
    if (auto* lin = dynamic_cast<nn::Linear*>(m)) out.emplace_back(name, lin);
  return out;
}

std::string last_component(const std::string& name) {
  const auto dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

void check_rank_and_alpha(int64_t rank, double alpha) {
  PT_CHECK(rank >= 1, "retrain scope LoRA: rank must be at least 1, got ", rank);
  PT_CHECK(std::isfinite(alpha) && alpha > 0, "retrain scope LoRA: alpha must be a positive number, got ", alpha);
}

void check_lora_options(const LoraOptions& o) {
  check_rank_and_alpha(o.rank, o.alpha);
  PT_CHECK(!o.targets.empty(), "retrain scope LoRA: no target layers (choose from ", join_names(kLoraTargets), ")");
  for (const auto& t : o.targets)
    PT_CHECK(std::find(std::begin(kLoraTargets), std::end(kLoraTargets), t) != std::end(kLoraTargets),
             "retrain scope LoRA: unknown target layer '", t, "' (choose from ", join_names(kLoraTargets), ")");
}

// Attaches the adapter to the Linear called `name` and adds the adapter's parameters to `chosen`.
void attach(const std::string& name, nn::Linear& lin, std::shared_ptr<nn::LinearAdapter> adapter,
            std::set<const autograd::Variable*>& chosen) {
  for (auto& [pname, p] : adapter->named_parameters()) {
    p->set_name(name + "." + pname);  // full names in autograd and optimizer messages
    chosen.insert(p);
  }
  lin.attach_adapter(std::move(adapter));
}

// One adapter per targeted decoder Linear; returns the adapters' parameters.
std::set<const autograd::Variable*> attach_lora(opt::OptForCausalLM& model, RetrainScope scope, const LoraOptions& o) {
  check_lora_options(o);
  const std::set<std::string> targets(o.targets.begin(), o.targets.end());
  Generator gen(o.seed);  // walks the layers in order, so one seed fixes every A
  std::set<const autograd::Variable*> chosen;
  for (auto& [name, lin] : model.linear_layers()) {
    if (!targets.count(last_component(name))) continue;
    if (scope == RetrainScope::mask_lora)
      attach(name, *lin, std::make_shared<nn::MaskLoraAdapter>(*lin, o.rank, o.alpha, gen), chosen);
    else
      attach(name, *lin, std::make_shared<nn::ScaleLoraAdapter>(*lin, o.rank), chosen);
  }
  return chosen;
}

// The untied head itself, or a plain LoRA on it (a MaskLoRA adapter on an unmasked layer is exactly that).
std::set<const autograd::Variable*> select_lm_head(opt::OptForCausalLM& model, const LoraOptions& o) {
  PT_CHECK(o.lm_head_rank >= 0, "retrain scope lm_head: lm_head_rank must be 0 (train the whole head) or a LoRA rank, got ",
           o.lm_head_rank);
  if (o.lm_head_rank > 0) check_rank_and_alpha(o.lm_head_rank, o.alpha);
  model.untie_lm_head();
  std::set<const autograd::Variable*> chosen;
  if (o.lm_head_rank == 0) {
    chosen.insert(&model.lm_head->weight);
  } else {
    Generator gen(random_bits(o.seed, 1));  // independent of the decoder adapters' stream
    attach("lm_head", *model.lm_head,
           std::make_shared<nn::MaskLoraAdapter>(*model.lm_head, o.lm_head_rank, o.alpha, gen), chosen);
  }
  return chosen;
}

}  // namespace

RetrainScope parse_retrain_scope(const std::string& name) {
  for (const auto& [scope, n] : kScopeNames)
    if (name == n) return scope;
  std::vector<const char*> names;
  for (const auto& [_, n] : kScopeNames) names.push_back(n);
  PT_FAIL("unknown retrain scope '", name, "' (allowed: ", join_names(names), ")");
}

const char* retrain_scope_name(RetrainScope scope) {
  for (const auto& [s, n] : kScopeNames)
    if (s == scope) return n;
  PT_FAIL("retrain_scope_name: invalid RetrainScope value ", int(scope));
}

ScopeSelection prepare_scope(opt::OptForCausalLM& model, RetrainScope scope, const LoraOptions& lora) {
  for (auto& [name, lin] : all_linears(model))
    PT_CHECK(!lin->has_adapter(), "prepare_scope(", retrain_scope_name(scope), "): ", name, " still has a ",
             lin->adapter()->kind(), " adapter; call finish_scope after the previous retraining");
  ScopeSelection sel;
  sel.total = model.num_parameters();

  std::set<const autograd::Variable*> chosen;
  const bool biases = scope == RetrainScope::biases || scope == RetrainScope::biases_layernorm;
  const bool layer_norms = scope == RetrainScope::layernorm || scope == RetrainScope::biases_layernorm;
  switch (scope) {
    case RetrainScope::none:
      return sel;
    case RetrainScope::full:
      for (auto* p : model.parameters()) chosen.insert(p);
      break;
    case RetrainScope::biases:
    case RetrainScope::layernorm:
    case RetrainScope::biases_layernorm:
      // By module type, not by name: a Linear's or LayerNorm's bias, a LayerNorm's weight.
      for (auto& [_, m] : model.named_modules()) {
        if (auto* lin = dynamic_cast<nn::Linear*>(m); lin && biases && lin->bias.defined()) chosen.insert(&lin->bias);
        if (auto* ln = dynamic_cast<nn::LayerNorm*>(m)) {
          if (biases || layer_norms) chosen.insert(&ln->bias);
          if (layer_norms) chosen.insert(&ln->weight);
        }
      }
      break;
    case RetrainScope::lm_head:
      chosen = select_lm_head(model, lora);
      break;
    case RetrainScope::mask_lora:
    case RetrainScope::scale_lora:
      chosen = attach_lora(model, scope, lora);
      break;
  }

  // all_parameters gives the model's order, the weight-decay groups and the masks; keep the chosen ones.
  for (auto& p : all_parameters(model)) {
    if (!chosen.count(p.var)) continue;
    sel.trained += p.keep.defined() ? int64_t(std::llround(pt::sum_all(p.keep.to(DType::f32)).item()))
                                    : p.var->data().numel();
    sel.params.push_back(std::move(p));
  }
  PT_CHECK(sel.params.size() == chosen.size(), "prepare_scope(", retrain_scope_name(scope), "): selected ",
           chosen.size(), " parameters but found ", sel.params.size(), " of them in the model");
  return sel;
}

void finish_scope(opt::OptForCausalLM& model, RetrainScope scope) {
  PT_NVTX_RANGE("train/finish_scope");
  for (auto& [name, lin] : all_linears(model)) {
    if (!lin->has_adapter()) continue;
    PT_CHECK(attaches_adapters(scope), "finish_scope(", retrain_scope_name(scope), "): ", name, " has a ",
             lin->adapter()->kind(), " adapter that this scope does not attach");
    lin->merge_adapter();
  }
  assert_pruned_weights_zero(model);
}

void assert_pruned_weights_zero(opt::OptForCausalLM& model) {
  autograd::NoGradGuard no_grad;
  for (auto& [name, lin] : all_linears(model)) {
    if (!lin->has_mask()) continue;
    // The pruned entries (0 where kept): != 0 is true for any nonzero value and for NaN, false for ±0.0.
    const Tensor pruned = pt::masked_fill(lin->weight.data(), lin->weight_mask, 0.0);
    const Tensor bad = pt::compare_scalar(pruned, 0.0, CompareOp::ne);
    const double count = pt::sum_all(bad.to(DType::f32)).item();
    PT_CHECK(count == 0.0, "pruned weights not zero: ", name, ".weight has ", int64_t(std::llround(count)),
             " nonzero entries where its mask is 0 (something wrote to the weight without re-applying the mask)");
  }
}

}  // namespace pt::train
