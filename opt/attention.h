// OPT's causal multi-head self-attention (Hugging Face OPTAttention, eager path), in the same order of
// operations: q = (x·W_qᵀ + b_q) * head_dim^-0.5 (scaled after its bias), k and v with biases, heads laid out
// [B, H, T, D], scores = q·kᵀ, causal softmax in fp32, dropout on the probabilities, P·v, heads merged back to
// [B, T, C], out_proj.
#pragma once
#include "nn/dropout.h"
#include "nn/linear.h"
#include "opt/config.h"

namespace pt::opt {

using autograd::Variable;

// Keys and values of the positions seen so far, for incremental decoding (inference only).
struct AttentionCache {
  int64_t capacity = 0;  // positions the buffers hold; allocated on first use
  int64_t length = 0;    // positions filled so far
  Tensor k, v;           // [B, H, capacity, D]
};

class OptAttention : public nn::Module {
 public:
  OptAttention(const OptConfig& config, Device device, DType dtype, uint64_t dropout_seed);

  // x [B, T, C] -> [B, T, C]. Without a cache, token t attends to tokens 0..t. With a cache (only under
  // NoGradGuard), x holds the T newest positions: their keys/values are appended and each attends to every
  // cached position plus the new ones up to itself.
  Variable forward(const Variable& x, AttentionCache* cache = nullptr);

  // Registered in Hugging Face's order (k, v, q, out), so named_parameters() lists them the same way.
  nn::Linear k_proj, v_proj, q_proj, out_proj;
  nn::Dropout attn_dropout;  // p = attention_dropout, on the probabilities

 private:
  Variable split_heads(const Variable& y, int64_t B, int64_t T) const;  // [B,T,C] -> contiguous [B,H,T,D]
  int64_t heads_, head_dim_;
  double scaling_;
};

}  // namespace pt::opt
