// OPTForCausalLM: the OPT decoder with its tied language-model head, under Hugging Face's parameter names so
// that state_dict() maps one to one onto an HF checkpoint:
//   model.decoder.embed_tokens        [V, E]  (padding_idx = pad_token_id: that row gets no lookup gradient)
//   model.decoder.embed_positions     [max_pos + 2, C]  (position p reads row p + 2)
//   model.decoder.project_out/in      [E, C] / [C, E], no bias, only when E != C (350m)
//   model.decoder.final_layer_norm    only for pre-LN models
//   model.decoder.layers.{i}.…        see DecoderLayer
// The LM head is the token embedding itself (logits = h·Eᵀ), not a separate parameter, unless the config says
// tie_word_embeddings = false or untie_lm_head() is called: then it is its own weight "lm_head.weight" [V, E]
// (an untied HF model, or retraining the head without touching the embedding), and config() says so.
// B = batch, T = tokens, C = hidden size, E = word_embed_proj_dim, V = vocab size.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nn/embedding.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"
#include "opt/config.h"
#include "opt/decoder_layer.h"
#include "opt/hf_checkpoint.h"

namespace pt::opt {

// Per-layer key/value caches for incremental decoding; make one with OptForCausalLM::make_cache.
struct KVCache {
  std::vector<AttentionCache> layers;
  int64_t length() const { return layers.empty() ? 0 : layers.front().length; }  // positions cached
  int64_t capacity() const { return layers.empty() ? 0 : layers.front().capacity; }
};

class OptForCausalLM : public nn::Module {
 public:
  // f32 parameters on `device`, initialised like Hugging Face's _init_weights from a Generator seeded with
  // `seed`: Linear and Embedding weights ~ N(0, init_std), biases 0, the padding row 0, LayerNorm 1 / 0.
  // Dropout generators are seeded from `seed` too.
  OptForCausalLM(const OptConfig& config, Device device, uint64_t seed);

  // A model with the checkpoint's config whose parameters are allocated once, in `dtype` on `device`, and
  // filled straight from the files (no random init, no second copy).
  static std::unique_ptr<OptForCausalLM> from_hf(const HfCheckpoint& checkpoint, Device device,
                                                 DType dtype = DType::f32);
  // The ends of a model whose decoder layers live elsewhere (streamed one at a time, opt/streamed_layers.h): token
  // and position embeddings, projections, final LayerNorm and an untied head when the config has one; no decoder
  // layers, parameters uninitialised. embed() and head() work; forward() and loss() refuse.
  static std::unique_ptr<OptForCausalLM> without_layers(const OptConfig& config, Device device, DType dtype);
  bool has_layers() const { return int64_t(layers_.size()) == config_.num_hidden_layers; }

  const OptConfig& config() const { return config_; }
  Device device() const { return embed_tokens.weight.device(); }
  DType dtype() const { return embed_tokens.weight.dtype(); }

  // ids [B, T] (i64 or i32, any device) -> logits [B, T, V]. Every token is real (positions 0..T-1, as HF
  // with attention_mask=None; no padding mask). With a cache (under NoGradGuard), ids are the newest T
  // tokens, at positions cache->length() ... cache->length() + T - 1.
  Variable forward(const Tensor& ids, KVCache* cache = nullptr);
  // Hugging Face's ForCausalLMLoss: labels [B, T] shifted left by one, mean cross-entropy over every label
  // that is not -100 (logits[:, t] predicts labels[:, t + 1]).
  Variable loss(const Tensor& ids, const Tensor& labels);
  KVCache make_cache(int64_t capacity) const;

  // Checks the checkpoint's architecture (check_matches), unties the head when the checkpoint's is untied, then
  // reads every parameter straight into its storage. Errors name the tensor (and both shapes on a mismatch).
  void load_hf(const HfCheckpoint& checkpoint);

  // Layer-by-layer access (calibration and pruning run one decoder layer at a time):
  //   x = embed(ids); for each layer: x = layer(i).forward(Variable(x)).data(); logits = head(Variable(x)).
  Tensor embed(const Tensor& ids);  // [B, T] -> layer-0 input [B, T, C], without gradients
  Variable head(const Variable& h);  // [B, T, C] -> logits [B, T, V]: final LN, project_out, lm_head

  // Gives the LM head its own parameter, registered last as "lm_head.weight" (a bias-free Linear E -> V, as in
  // transformers), initialised to a copy of embed_tokens.weight so the logits do not change. From then on the
  // head and the embedding are trained independently and both are in state_dict() and checkpoints (a model
  // must be untied before loading an HDF5 checkpoint of an untied one). Sets config().tie_word_embeddings to
  // false. Does nothing when already untied.
  void untie_lm_head();
  bool lm_head_tied() const { return lm_head == nullptr; }

  int64_t num_layers() const { return int64_t(layers_.size()); }  // 0 for a model without_layers()
  DecoderLayer& layer(int64_t i);
  std::vector<DecoderLayer*> decoder_layers();
  // The six Linear layers of every decoder layer with full names ("model.decoder.layers.3.fc1"), layer by
  // layer in registration order. Embeddings, projections and the LM head are not included.
  std::vector<std::pair<std::string, nn::Linear*>> linear_layers();

  nn::Embedding embed_tokens;
  nn::Embedding embed_positions;
  std::unique_ptr<nn::Linear> project_out, project_in;  // only when E != C
  std::unique_ptr<nn::LayerNorm> final_layer_norm;      // only for pre-LN
  std::unique_ptr<nn::Linear> lm_head;                  // only once untied; else the head is embed_tokens

 private:
  OptForCausalLM(const OptConfig& config, Device device, DType dtype, uint64_t seed, bool random_init,
                 bool with_layers = true);
  Variable embed_variable(const Tensor& ids, int64_t past_length);  // tokens + positions [B,T,C]
  void init_weights(uint64_t seed);
  void add_lm_head(Device device, DType dtype);  // registers an (uninitialised) untied head

  OptConfig config_;
  std::vector<std::unique_ptr<DecoderLayer>> layers_;
};

}  // namespace pt::opt
