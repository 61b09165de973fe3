#include "opt/attention.h"

#include <cmath>

#include "autograd/autocast.h"
#include "autograd/functions.h"
#include "tensor/ops/op_families.h"

namespace pt::opt {

namespace ag = autograd;

OptAttention::OptAttention(const OptConfig& c, Device device, DType dtype, uint64_t dropout_seed)
    : k_proj(c.hidden_size, c.hidden_size, c.enable_bias, device, dtype),
      v_proj(c.hidden_size, c.hidden_size, c.enable_bias, device, dtype),
      q_proj(c.hidden_size, c.hidden_size, c.enable_bias, device, dtype),
      out_proj(c.hidden_size, c.hidden_size, c.enable_bias, device, dtype),
      attn_dropout(c.attention_dropout, dropout_seed),
      heads_(c.num_attention_heads),
      head_dim_(c.head_dim()),
      scaling_(std::pow(double(c.head_dim()), -0.5)) {
  register_module("k_proj", &k_proj);
  register_module("v_proj", &v_proj);
  register_module("q_proj", &q_proj);
  register_module("out_proj", &out_proj);
  register_module("attn_dropout", &attn_dropout);
}

Variable OptAttention::split_heads(const Variable& y, int64_t B, int64_t T) const {
  // One copy here instead of one per product (and per backward) on the strided view.
  return ag::contiguous(ag::permute(ag::reshape(y, {B, T, heads_, head_dim_}), {0, 2, 1, 3}));
}

Variable OptAttention::forward(const Variable& x, AttentionCache* cache) {
  PT_CHECK(x.dim() == 3 && x.size(2) == heads_ * head_dim_, "OptAttention: input ", x.data().describe(),
           " must be [B, T, ", heads_ * head_dim_, "]");
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  // HF multiplies the projected (biased) query by the scale, then calls attention with scaling 1.
  Variable q = split_heads(ag::mul_scalar(q_proj.forward(x), scaling_), B, T);  // [B,H,T,D]
  Variable k = split_heads(k_proj.forward(x), B, T);                            // [B,H,T,D]
  Variable v = split_heads(v_proj.forward(x), B, T);                            // [B,H,T,D]

  if (cache) {
    PT_CHECK(!ag::grad_enabled(), "OptAttention: the KV cache is for inference; run it under NoGradGuard");
    if (!cache->k.defined()) {
      cache->k = Tensor::empty({B, heads_, cache->capacity, head_dim_}, x.dtype(), x.device());
      cache->v = Tensor::empty({B, heads_, cache->capacity, head_dim_}, x.dtype(), x.device());
    }
    PT_CHECK(cache->k.size(0) == B && cache->length + T <= cache->capacity, "OptAttention: KV cache for batch ",
             cache->k.size(0), " with ", cache->length, "/", cache->capacity, " positions filled cannot take ", T,
             " more positions of batch ", B);
    cache->k.narrow(2, cache->length, T).copy_(k.data());
    cache->v.narrow(2, cache->length, T).copy_(v.data());
    cache->length += T;
    k = Variable(cache->k.narrow(2, 0, cache->length));  // [B,H,Tk,D]
    v = Variable(cache->v.narrow(2, 0, cache->length));  // [B,H,Tk,D]
  }

  // Causal softmax masks key j for query i when j > i + (Tk - Tq): exactly HF's mask with a past.
  // Inference (perplexity, calibration forwards) runs the attention family's selection (tensor/ops/op_families.h):
  // on the CPU by default the blocked kernel, half the work of the composition below and no [T, Tk] scores in
  // memory; equal to it up to rounding (tensor/ops/causal_attention.h). Under autocast (CUDA) the products below
  // run in bf16, which the family's f32 variants would not.
  const bool dropout_active = attn_dropout.is_training() && attn_dropout.p() > 0;
  const bool autocast_products = x.data().is_cuda() && ag::autocast_enabled();
  if (!cache && !ag::grad_enabled() && !dropout_active && !autocast_products)
    return out_proj.forward(Variable(attention_family().get("", x.device())(q.data(), k.data(), v.data())));

  Variable scores = ag::matmul(q, k, false, true);           // [B,H,T,Tk]
  Variable probs = attn_dropout.forward(ag::softmax(scores, /*causal=*/true));
  Variable context = ag::matmul(probs, v);                   // [B,H,T,D]
  context = ag::reshape(ag::permute(context, {0, 2, 1, 3}), {B, T, C});  // [B,T,H,D] -> [B,T,C]
  return out_proj.forward(context);
}

}  // namespace pt::opt
