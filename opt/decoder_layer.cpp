#include "opt/decoder_layer.h"

#include "autograd/functions.h"

namespace pt::opt {

namespace ag = autograd;

DecoderLayer::DecoderLayer(const OptConfig& c, Device device, DType dtype, uint64_t dropout_seed)
    : self_attn(c, device, dtype, random_bits(dropout_seed, 1)),
      self_attn_layer_norm(c.hidden_size, c.layer_norm_eps, device, dtype),
      fc1(c.hidden_size, c.ffn_dim, c.enable_bias, device, dtype),
      fc2(c.ffn_dim, c.hidden_size, c.enable_bias, device, dtype),
      final_layer_norm(c.hidden_size, c.layer_norm_eps, device, dtype),
      dropout(c.dropout, dropout_seed),
      pre_ln_(c.do_layer_norm_before) {
  register_module("self_attn", &self_attn);
  register_module("self_attn_layer_norm", &self_attn_layer_norm);
  register_module("fc1", &fc1);
  register_module("fc2", &fc2);
  register_module("final_layer_norm", &final_layer_norm);
  register_module("dropout", &dropout);
}

Variable DecoderLayer::forward(const Variable& x, AttentionCache* cache) {
  // Attention block.
  Variable h = pre_ln_ ? self_attn_layer_norm.forward(x) : x;
  h = ag::add(x, dropout.forward(self_attn.forward(h, cache)));  // [B,T,C]
  if (!pre_ln_) h = self_attn_layer_norm.forward(h);

  // Feed-forward block (ReLU MLP; OPT applies no dropout after the activation).
  Variable f = pre_ln_ ? final_layer_norm.forward(h) : h;
  f = fc2.forward(ag::relu(fc1.forward(f)));  // [B,T,F] -> [B,T,C]
  Variable out = ag::add(h, dropout.forward(f));
  return pre_ln_ ? out : final_layer_norm.forward(out);
}

std::vector<std::pair<std::string, nn::Linear*>> DecoderLayer::linear_layers() {
  return {{"self_attn.k_proj", &self_attn.k_proj}, {"self_attn.v_proj", &self_attn.v_proj},
          {"self_attn.q_proj", &self_attn.q_proj}, {"self_attn.out_proj", &self_attn.out_proj},
          {"fc1", &fc1},                           {"fc2", &fc2}};
}

}  // namespace pt::opt
