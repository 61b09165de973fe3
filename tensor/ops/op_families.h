// The model's op pieces as kernel families (tensor/kernel_registry.h), so their variants are checked, benchmarked
// and chosen at run time like the pruning kernels:
//   softmax     softmax over the last dim, optionally causal (tensor/ops.h), as the model's attention takes it
//               fused    the op: one pass per row (CPU loops, the reference; CUDA kernel)
//               unfused  max, subtract, exp, sum, divide: five tensor ops
//   layer_norm  y = (x - mean)·rstd·w + b over the last dim, with mean and rstd per row
//               fused    the op: one kernel per row (CPU loops, the reference; CUDA kernel)
//               unfused  mean, centre, mean of squares, rsqrt, scale and shift: tensor ops
//   attention   causal attention for inference: context [B, Tq, H·D] from q (scaled), k, v [B, H, T, D]
//               unfused  q·kᵀ, causal softmax, ·v, heads side by side (the training path's composition; the
//                        reference)
//               blocked  tensor/ops/causal_attention.h: 128 queries at a time, no [T, T] scores (CPU)
// autograd::softmax / autograd::layer_norm run their family's selection (the backward is the op's); OptAttention
// runs the attention family's selection for inference forwards.
#pragma once
#include "tensor/kernel_registry.h"
#include "tensor/ops.h"

namespace pt {

using SoftmaxFn = Tensor(const Tensor& x, bool causal);
kernels::Family<SoftmaxFn>& softmax_family();

using LayerNormFn = LayerNormOut(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);
kernels::Family<LayerNormFn>& layer_norm_family();

using AttentionFn = Tensor(const Tensor& q, const Tensor& k, const Tensor& v);
kernels::Family<AttentionFn>& attention_family();

}  // namespace pt
