#include "opt/config.h"

#include <sstream>

#include "tensor/error.h"

namespace pt::opt {

namespace {
OptConfig make(const char* name, int64_t layers, int64_t hidden, int64_t heads, int64_t ffn) {
  OptConfig c;
  c.name = name;
  c.num_hidden_layers = layers;
  c.hidden_size = hidden;
  c.num_attention_heads = heads;
  c.ffn_dim = ffn;
  c.word_embed_proj_dim = hidden;
  return c;
}
}  // namespace

std::vector<std::string> opt_preset_names() {
  return {"125m", "350m", "1.3b", "2.7b", "6.7b", "13b", "30b", "66b", "tiny", "tiny-350m"};
}

OptConfig opt_preset(const std::string& raw) {
  std::string n = raw.rfind("facebook/", 0) == 0 ? raw.substr(9) : raw;
  if (n.rfind("opt-", 0) == 0) n = n.substr(4);
  // Sizes from the published config.json files (see shared/reference/opt-and-tools.md).
  if (n == "125m") return make("opt-125m", 12, 768, 12, 3072);
  if (n == "350m") {
    OptConfig c = make("opt-350m", 24, 1024, 16, 4096);
    c.word_embed_proj_dim = 512;
    c.do_layer_norm_before = false;
    return c;
  }
  if (n == "1.3b") return make("opt-1.3b", 24, 2048, 32, 8192);
  if (n == "2.7b") return make("opt-2.7b", 32, 2560, 32, 10240);
  if (n == "6.7b") return make("opt-6.7b", 32, 4096, 32, 16384);
  if (n == "13b") return make("opt-13b", 40, 5120, 40, 20480);
  if (n == "30b") return make("opt-30b", 48, 7168, 56, 28672);
  if (n == "66b") return make("opt-66b", 64, 9216, 72, 36864);
  if (n == "tiny") {
    OptConfig c = make("opt-tiny", 2, 64, 4, 256);
    c.vocab_size = 512;
    c.max_position_embeddings = 64;
    return c;
  }
  if (n == "tiny-350m") {
    OptConfig c = make("opt-tiny-350m", 2, 64, 4, 256);
    c.vocab_size = 512;
    c.max_position_embeddings = 64;
    c.word_embed_proj_dim = 32;
    c.do_layer_norm_before = false;
    return c;
  }
  std::ostringstream os;
  for (auto& p : opt_preset_names()) os << (os.tellp() ? ", " : "") << p;
  PT_FAIL("unknown OPT preset '", raw, "' (allowed: ", os.str(), ")");
}

namespace {
constexpr int64_t kMaxSize = int64_t(1) << 31;  // per size field; OPT-66b's largest is 50272
}  // namespace

int64_t OptConfig::num_parameters() const {
  // Sizes come from config.json files: each is checked against kMaxSize, so the count below cannot overflow 128 bits,
  // and the total must fit int64 (signed overflow would be undefined behaviour).
  for (int64_t v : {vocab_size, hidden_size, num_hidden_layers, ffn_dim, max_position_embeddings, word_embed_proj_dim})
    PT_CHECK(v >= 0 && v <= kMaxSize, "OPT config ", name, ": a size of ", v, " is outside [0, ", kMaxSize, "]");
  using Wide = __int128;
  const Wide h = hidden_size, e = word_embed_proj_dim, f = ffn_dim, b = enable_bias ? 1 : 0;
  const Wide per_layer = 4 * (h * h + b * h) + (h * f + b * f) + (f * h + b * h) + 2 * 2 * h;
  Wide n = Wide(vocab_size) * e + (Wide(max_position_embeddings) + 2) * h + Wide(num_hidden_layers) * per_layer;
  if (has_projections()) n += 2 * e * h;
  if (has_final_layer_norm()) n += 2 * h;
  if (!tie_word_embeddings) n += Wide(vocab_size) * e;
  PT_CHECK(n <= INT64_MAX, "OPT config ", name, ": the sizes are too large: the parameter count overflows a 64-bit "
           "integer (vocab_size ", vocab_size, ", hidden_size ", hidden_size, ", ffn_dim ", ffn_dim,
           ", num_hidden_layers ", num_hidden_layers, ")");
  return int64_t(n);
}

void OptConfig::validate() const {
  auto positive = [&](const char* field, int64_t v) {
    PT_CHECK(v > 0 && v <= kMaxSize, "OPT config ", name, ": ", field, " = ", v, " must be in [1, ", kMaxSize, "]");
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("ffn_dim", ffn_dim);
  positive("num_attention_heads", num_attention_heads);
  positive("max_position_embeddings", max_position_embeddings);
  positive("word_embed_proj_dim", word_embed_proj_dim);
  PT_CHECK(hidden_size % num_attention_heads == 0, "OPT config ", name, ": hidden_size ", hidden_size,
           " is not divisible by num_attention_heads ", num_attention_heads);
  PT_CHECK(dropout >= 0 && dropout < 1, "OPT config ", name, ": dropout ", dropout, " must be in [0, 1)");
  PT_CHECK(attention_dropout >= 0 && attention_dropout < 1, "OPT config ", name, ": attention_dropout ",
           attention_dropout, " must be in [0, 1)");
  PT_CHECK(layer_norm_eps > 0, "OPT config ", name, ": layer_norm_eps must be positive");
  PT_CHECK(pad_token_id >= 0 && pad_token_id < vocab_size, "OPT config ", name, ": pad_token_id ", pad_token_id,
           " is outside the vocabulary of ", vocab_size);
  num_parameters();  // throws when the sizes together overflow
}

bool OptConfig::same_architecture(const OptConfig& o) const {
  return vocab_size == o.vocab_size && hidden_size == o.hidden_size && num_hidden_layers == o.num_hidden_layers &&
         ffn_dim == o.ffn_dim && num_attention_heads == o.num_attention_heads &&
         max_position_embeddings == o.max_position_embeddings && word_embed_proj_dim == o.word_embed_proj_dim &&
         do_layer_norm_before == o.do_layer_norm_before && remove_final_layer_norm == o.remove_final_layer_norm &&
         enable_bias == o.enable_bias;
}

std::string OptConfig::describe() const {
  std::ostringstream os;
  os << name << ": " << num_hidden_layers << " layers, hidden " << hidden_size << ", " << num_attention_heads
     << " heads, ffn " << ffn_dim << ", vocab " << vocab_size << ", context " << max_position_embeddings
     << (do_layer_norm_before ? ", pre-LN" : ", post-LN");
  if (has_projections()) os << ", embed dim " << word_embed_proj_dim;
  if (!tie_word_embeddings) os << ", untied lm_head";
  os << ", " << num_parameters() << " parameters";
  return os.str();
}

}  // namespace pt::opt
