// Causal attention for inference on the CPU, blocked so the [T, T] score matrix never exists: for each block of
// 128 queries it multiplies by the keys the block can see (none past the diagonal), takes the causal softmax of
// those rows while they sit in cache, and multiplies by the values. It computes softmax(q·kᵀ, causal)·v exactly as
// the composition matmul → softmax(causal) → matmul does, with about half the multiply-adds and none of the
// T²-sized memory traffic; only the summation grouping of the second product differs (BLAS splits its shorter
// inner dimension differently), so results agree to rounding, not bit for bit.
// No gradient: the autograd composition stays the training path, and CUDA tensors take that composition too.
#pragma once
#include "tensor/tensor.h"

namespace pt {

// q [B, H, Tq, D] (already scaled), k and v [B, H, Tk, D], contiguous, f32 or f64 on the CPU; query i sees keys
// j <= i + (Tk - Tq). Returns the context as [B, Tq, H·D] (heads side by side, what the output projection reads).
Tensor causal_attention_cpu(const Tensor& q, const Tensor& k, const Tensor& v);

}  // namespace pt
