// Retraining scopes (PERP, arXiv 2312.15230): which parameters the retraining after a pruning step may change.
//   none               nothing (skip training)
//   full               every parameter; pruned Linear weights by masked AdamW
//   biases             every bias (Linear and LayerNorm, as PERP's activate_biases)
//   layernorm          every LayerNorm weight and bias
//   biases+layernorm   the union of the two
//   lm_head            the LM head only, untied from the token embedding first (PERP never trains embeddings):
//                      the whole head, or a plain LoRA on it when LoraOptions::lm_head_rank > 0 (as PERP)
//   mask-lora          MaskLoRA adapters on the target Linear layers (nn/lora.h)
//   scale-lora         ScaleLoRA adapters on the target Linear layers
// Whatever the scope, a pruned weight stays exactly 0.0: masked AdamW for full, and adapters whose effective
// weight is 0 wherever the weight is pruned.
//
// Use: sel = prepare_scope(model, scope); if (!sel.params.empty()) train_model(model, sel.params, …);
//      finish_scope(model, scope).
// Between the two calls the model carries the adapters, so its named_parameters, state dict and
// train_model's checkpoints hold "….lora_A" / "….lora_B"; resuming such a checkpoint needs prepare_scope
// first. After finish_scope they are gone, merged into the weights.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "opt/model.h"
#include "train/trainer.h"

namespace pt::train {

enum class RetrainScope { none, full, biases, layernorm, biases_layernorm, lm_head, mask_lora, scale_lora };

// "none", "full", "biases", "layernorm", "biases+layernorm", "lm_head", "mask-lora", "scale-lora"; anything
// else throws pt::Error listing these.
RetrainScope parse_retrain_scope(const std::string& name);
const char* retrain_scope_name(RetrainScope scope);  // the name parse_retrain_scope reads

struct LoraOptions {
  int64_t rank = 16;
  double alpha = 32;  // mask-lora scales B·A by alpha / rank; scale-lora has no scaling
  // Short names of the decoder Linear layers that get an adapter (any of the six; PERP uses all of them).
  std::vector<std::string> targets = {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"};
  uint64_t seed = 0;  // the A initialisation of mask-lora and of the head's LoRA
  // lm_head scope: 0 trains the whole untied head (V·E elements); r > 0 trains a plain LoRA of rank r on it
  // instead (PERP's peft_use_lm_head; r·(V + E) elements, scaled by alpha / r), merged by finish_scope.
  int64_t lm_head_rank = 0;
};

struct ScopeSelection {
  std::vector<TrainableParameter> params;  // what to pass to train_model (empty for none)
  int64_t trained = 0;  // elements the optimizer may change (pruned entries of masked weights excluded)
  int64_t total = 0;    // the model's parameter elements when prepare_scope was called (no adapters)
  double fraction() const { return total > 0 ? double(trained) / double(total) : 0.0; }
};

// Prepares the model for the scope (attaches adapters for the LoRA scopes, unties the LM head for lm_head)
// and returns what to train, in the model's parameter order. Weight decay follows Hugging Face: on for
// weights, the LM head and the adapters, off for biases and LayerNorm parameters. Throws when adapters are
// still attached from an earlier prepare_scope, or for LoraOptions the scope uses that are bad (rank < 1,
// alpha <= 0, an unknown target).
ScopeSelection prepare_scope(opt::OptForCausalLM& model, RetrainScope scope, const LoraOptions& lora = {});

// After training: merges every attached adapter into its weight (removing it) and then checks that every
// pruned weight is exactly 0.0 (assert_pruned_weights_zero). The LM head stays untied: the model now has
// "lm_head.weight" of its own, in its state dict and checkpoints. Throws when a layer carries an adapter that
// this scope does not attach (a finish_scope for the wrong scope).
void finish_scope(opt::OptForCausalLM& model, RetrainScope scope);

// Throws pt::Error naming the first weight (and its count of offenders) where a pruned entry is not 0.0
// (-0.0 counts as zero; NaN does not).
void assert_pruned_weights_zero(opt::OptForCausalLM& model);

}  // namespace pt::train
