// One OPT decoder layer (Hugging Face OPTDecoderLayer):
//   pre-LN  (every size but 350m): h = h + drop(attn(LN1(h)));  h = h + drop(fc2(relu(fc1(LN2(h)))))
//   post-LN (350m):                h = LN1(h + drop(attn(h)));  h = LN2(h + drop(fc2(relu(fc1(h)))))
// LN1 is self_attn_layer_norm, LN2 final_layer_norm; drop uses config.dropout in training mode only.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "nn/dropout.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"
#include "opt/attention.h"
#include "opt/config.h"

namespace pt::opt {

class DecoderLayer : public nn::Module {
 public:
  // dropout_seed seeds the residual dropout; the attention dropout gets a seed derived from it.
  DecoderLayer(const OptConfig& config, Device device, DType dtype, uint64_t dropout_seed);

  // x [B, T, C] -> [B, T, C]. cache: see OptAttention::forward.
  Variable forward(const Variable& x, AttentionCache* cache = nullptr);

  // The six prunable Linear layers with their names inside the layer ("self_attn.k_proj", ..., "fc2"), in
  // registration order.
  std::vector<std::pair<std::string, nn::Linear*>> linear_layers();

  // Registered in Hugging Face's order and under its names.
  OptAttention self_attn;
  nn::LayerNorm self_attn_layer_norm;
  nn::Linear fc1, fc2;
  nn::LayerNorm final_layer_norm;
  nn::Dropout dropout;  // residual dropout (no tensors, so it adds no names)

 private:
  bool pre_ln_;
};

}  // namespace pt::opt
