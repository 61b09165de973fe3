// OPT model configuration: the fields of Hugging Face's OPTConfig that change the computation, the
// presets of every published size (125m ... 66b) and small ones for tests.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace pt::opt {

struct OptConfig {
  std::string name = "custom";
  int64_t vocab_size = 50272;
  int64_t hidden_size = 768;
  int64_t num_hidden_layers = 12;
  int64_t ffn_dim = 3072;
  int64_t num_attention_heads = 12;
  int64_t max_position_embeddings = 2048;
  int64_t word_embed_proj_dim = 768;  // != hidden_size only for 350m (project_in / project_out)
  bool do_layer_norm_before = true;   // false = post-LN (350m)
  bool remove_final_layer_norm = false;
  bool enable_bias = true;
  // HF's tie_word_embeddings: the LM head is the token embedding itself (every published OPT). False: the model
  // has its own "lm_head.weight" [V, E] (a checkpoint of it must store one). Not part of same_architecture():
  // the weights decide it, not the preset.
  bool tie_word_embeddings = true;
  double dropout = 0.1;
  double attention_dropout = 0.0;
  double layer_norm_eps = 1e-5;
  double init_std = 0.02;
  int64_t pad_token_id = 1;
  int64_t bos_token_id = 2;
  int64_t eos_token_id = 2;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  bool has_projections() const { return word_embed_proj_dim != hidden_size; }
  bool has_final_layer_norm() const { return do_layer_norm_before && !remove_final_layer_norm; }
  int64_t num_parameters() const;  // a tied LM head is the embedding (counted once); an untied one counts V·E
  void validate() const;           // throws pt::Error naming the field and what is allowed
  bool same_architecture(const OptConfig& o) const;  // every field that changes shapes or the computation
  std::string describe() const;    // one line: "opt-125m: 12 layers, hidden 768, ..."
};

// "125m", "350m", "1.3b", "2.7b", "6.7b", "13b", "30b", "66b" (also with an "opt-" prefix), and the test
// configs "tiny" (2 layers, hidden 64, vocab 512) and "tiny-350m" (post-LN with projections).
OptConfig opt_preset(const std::string& name);
std::vector<std::string> opt_preset_names();

}  // namespace pt::opt
