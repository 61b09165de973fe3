#include "opt/model.h"

#include <set>

#include "autograd/functions.h"

namespace pt::opt {

namespace ag = autograd;

OptForCausalLM::OptForCausalLM(const OptConfig& config, Device device, uint64_t seed)
    : OptForCausalLM(config, device, DType::f32, seed, /*random_init=*/true) {}

OptForCausalLM::OptForCausalLM(const OptConfig& c, Device device, DType dtype, uint64_t seed, bool random_init,
                               bool with_layers)
    : embed_tokens(c.vocab_size, c.word_embed_proj_dim, c.pad_token_id, device, dtype),
      embed_positions(c.max_position_embeddings + 2, c.hidden_size, -1, device, dtype),
      config_(c) {
  c.validate();
  // Registration follows OPTDecoder.__init__, so named_parameters() lists tensors in Hugging Face's order.
  const std::string d = "model.decoder.";
  register_module(d + "embed_tokens", &embed_tokens);
  register_module(d + "embed_positions", &embed_positions);
  if (c.has_projections()) {
    project_out = std::make_unique<nn::Linear>(c.hidden_size, c.word_embed_proj_dim, false, device, dtype);
    project_in = std::make_unique<nn::Linear>(c.word_embed_proj_dim, c.hidden_size, false, device, dtype);
    register_module(d + "project_out", project_out.get());
    register_module(d + "project_in", project_in.get());
  }
  if (c.has_final_layer_norm()) {
    final_layer_norm = std::make_unique<nn::LayerNorm>(c.hidden_size, c.layer_norm_eps, device, dtype);
    register_module(d + "final_layer_norm", final_layer_norm.get());
  }
  for (int64_t i = 0; with_layers && i < c.num_hidden_layers; ++i) {
    layers_.push_back(std::make_unique<DecoderLayer>(c, device, dtype, random_bits(seed, 1000 + uint64_t(i))));
    register_module(d + "layers." + std::to_string(i), layers_.back().get());
  }
  if (!c.tie_word_embeddings) add_lm_head(device, dtype);  // registered last, as in OPTForCausalLM
  for (auto& [name, p] : named_parameters()) p->set_name(name);  // full HF names in autograd/optimizer messages
  if (random_init) init_weights(seed);
}

void OptForCausalLM::init_weights(uint64_t seed) {
  // One generator walks the modules in registration order (HF's model.apply(_init_weights) visits the same
  // module types; the values differ from PyTorch's RNG, the distributions do not).
  Generator gen(seed);
  for (auto& [name, m] : named_modules()) {
    if (auto* lin = dynamic_cast<nn::Linear*>(m)) lin->init_normal(config_.init_std, gen);
    else if (auto* emb = dynamic_cast<nn::Embedding*>(m)) emb->init_normal(config_.init_std, gen);
    else if (auto* ln = dynamic_cast<nn::LayerNorm*>(m)) ln->reset_parameters();
  }
}

std::unique_ptr<OptForCausalLM> OptForCausalLM::from_hf(const HfCheckpoint& checkpoint, Device device, DType dtype) {
  std::unique_ptr<OptForCausalLM> model(
      new OptForCausalLM(checkpoint.config(), device, dtype, /*seed=*/0, /*random_init=*/false));
  model->load_hf(checkpoint);
  model->eval();  // like transformers' from_pretrained
  return model;
}

std::unique_ptr<OptForCausalLM> OptForCausalLM::without_layers(const OptConfig& config, Device device, DType dtype) {
  std::unique_ptr<OptForCausalLM> model(
      new OptForCausalLM(config, device, dtype, /*seed=*/0, /*random_init=*/false, /*with_layers=*/false));
  model->eval();
  return model;
}

void OptForCausalLM::load_hf(const HfCheckpoint& checkpoint) {
  checkpoint.check_matches(config_);
  if (!checkpoint.config().tie_word_embeddings) untie_lm_head();  // its head comes from the files
  const auto params = named_parameters();
  // Tied, the head is served by embed_tokens and there is nothing to read for it; untied, it is one of the
  // parameters, and checkpoints without a separate head serve it from the embedding.
  std::set<std::string> ours{"lm_head.weight"};
  for (auto& [name, p] : params) {
    ours.insert(name);
    PT_CHECK(checkpoint.has(name), "load_hf: checkpoint ", checkpoint.dir(), " is missing tensor ", name);
  }
  for (const auto& name : checkpoint.canonical_names())
    PT_CHECK(ours.count(name), "load_hf: checkpoint ", checkpoint.dir(), " has unexpected tensor ", name);
  for (auto& [name, p] : params) checkpoint.read_into(name, p->data());
}

Variable OptForCausalLM::embed_variable(const Tensor& raw_ids, int64_t past) {
  PT_CHECK(raw_ids.dim() == 2 && (raw_ids.dtype() == DType::i64 || raw_ids.dtype() == DType::i32),
           "OptForCausalLM: ids must be [B, T] i64/i32, got ", raw_ids.describe());
  const Tensor ids = raw_ids.to(device());
  const int64_t T = ids.size(1);
  PT_CHECK(past + T <= config_.max_position_embeddings, "OptForCausalLM: positions ", past, "..", past + T - 1,
           " exceed the model's context of ", config_.max_position_embeddings, " tokens");
  Variable tok = embed_tokens.forward(ids);           // [B,T,E]
  if (project_in) tok = project_in->forward(tok);     // [B,T,C]
  // Position p reads row p + 2 (OPTLearnedPositionalEmbedding's offset); no dropout on the sum.
  Tensor positions = Tensor::arange(past + 2, past + T + 2, 1, DType::i64, device());
  Variable pos = embed_positions.forward(positions);  // [T,C], broadcast over B
  return ag::add(tok, pos);
}

Tensor OptForCausalLM::embed(const Tensor& ids) {
  ag::NoGradGuard no_grad;
  return embed_variable(ids, 0).data();
}

Variable OptForCausalLM::head(const Variable& h) {
  Variable x = h;
  if (final_layer_norm) x = final_layer_norm->forward(x);
  if (project_out) x = project_out->forward(x);               // [B,T,E]
  if (lm_head) return lm_head->forward(x);                    // [B,T,V]
  return ag::linear(x, embed_tokens.weight, Variable());      // tied lm_head: [B,T,V]
}

void OptForCausalLM::add_lm_head(Device device, DType dtype) {
  auto head = std::make_unique<nn::Linear>(config_.word_embed_proj_dim, config_.vocab_size, /*bias=*/false, device,
                                           dtype);
  head->weight.set_name("lm_head.weight");
  register_module("lm_head", head.get());
  lm_head = std::move(head);
  config_.tie_word_embeddings = false;  // so checkpoints and exports of this model say so
}

void OptForCausalLM::untie_lm_head() {
  if (lm_head) return;
  const Variable& e = embed_tokens.weight;
  add_lm_head(e.device(), e.dtype());
  lm_head->weight.data().copy_(e.data());
  lm_head->weight.set_requires_grad(e.requires_grad());
  lm_head->train(is_training());
}

Variable OptForCausalLM::forward(const Tensor& ids, KVCache* cache) {
  PT_CHECK(has_layers(), "OptForCausalLM::forward: this model holds only its ends (embeddings and head); its ",
           config_.num_hidden_layers, " decoder layers are streamed, so run it through opt::ModelLayers");
  PT_CHECK(!cache || int64_t(cache->layers.size()) == num_layers(), "OptForCausalLM::forward: the KV cache has ",
           cache ? cache->layers.size() : 0, " layers but the model has ", num_layers());
  Variable h = embed_variable(ids, cache ? cache->length() : 0);  // [B,T,C]
  for (int64_t i = 0; i < num_layers(); ++i) h = layers_[size_t(i)]->forward(h, cache ? &cache->layers[size_t(i)] : nullptr);
  return head(h);
}

Variable OptForCausalLM::loss(const Tensor& ids, const Tensor& labels) {
  PT_CHECK(labels.dim() == 2 && labels.dtype() == DType::i64 && labels.shape() == ids.shape(),
           "OptForCausalLM::loss: labels ", labels.describe(), " must be i64 with the shape of ids ", ids.describe());
  const int64_t B = ids.size(0), T = ids.size(1);
  Variable logits = forward(ids);  // [B,T,V]
  // Shift: position t is scored against labels[t + 1]; the last position has no target (-100).
  Tensor shifted = Tensor::full({B, T}, -100.0, DType::i64, device());
  if (T > 1) shifted.narrow(1, 0, T - 1).copy_(labels.narrow(1, 1, T - 1));
  return ag::cross_entropy(ag::reshape(logits, {B * T, logits.size(2)}), shifted.reshape({B * T}), -100);
}

KVCache OptForCausalLM::make_cache(int64_t capacity) const {
  PT_CHECK(capacity > 0 && capacity <= config_.max_position_embeddings, "OptForCausalLM::make_cache: capacity ",
           capacity, " must be in [1, ", config_.max_position_embeddings, "]");
  KVCache cache;
  cache.layers.resize(layers_.size());
  for (auto& l : cache.layers) l.capacity = capacity;
  return cache;
}

DecoderLayer& OptForCausalLM::layer(int64_t i) {
  PT_CHECK(i >= 0 && i < num_layers(), "OptForCausalLM::layer: index ", i, " outside [0, ", num_layers(), ")");
  return *layers_[size_t(i)];
}

std::vector<DecoderLayer*> OptForCausalLM::decoder_layers() {
  std::vector<DecoderLayer*> out;
  for (auto& l : layers_) out.push_back(l.get());
  return out;
}

std::vector<std::pair<std::string, nn::Linear*>> OptForCausalLM::linear_layers() {
  std::vector<std::pair<std::string, nn::Linear*>> out;
  for (int64_t i = 0; i < num_layers(); ++i)
    for (auto& [name, lin] : layers_[size_t(i)]->linear_layers())
      out.emplace_back("model.decoder.layers." + std::to_string(i) + "." + name, lin);
  return out;
}

}  // namespace pt::opt
