// Differentiable functions on Variables. Each computes its result with the tensor ops of tensor/ops.h
// and records a backward lambda that captures only what the gradient needs, so every backward runs on
// whatever device the data lives on. Binary ops broadcast numpy-style; gradients of broadcast inputs
// are summed back to the input's shape.
#pragma once
#include <cstdint>
#include <vector>

#include "autograd/variable.h"
#include "tensor/ops.h"

namespace pt::autograd {

// ---- element-wise -------------------------------------------------------------------------------
Variable add(const Variable& a, const Variable& b);
Variable sub(const Variable& a, const Variable& b);
Variable mul(const Variable& a, const Variable& b);
Variable div(const Variable& a, const Variable& b);
Variable add_scalar(const Variable& x, double s);
Variable mul_scalar(const Variable& x, double s);
Variable pow_scalar(const Variable& x, double p);
Variable neg(const Variable& x);
Variable relu(const Variable& x);
Variable exp(const Variable& x);
Variable log(const Variable& x);
Variable sqrt(const Variable& x);
Variable square(const Variable& x);

// ---- reductions ---------------------------------------------------------------------------------
Variable sum(const Variable& x, int64_t dim, bool keepdim = false);
Variable mean(const Variable& x, int64_t dim, bool keepdim = false);
Variable sum_all(const Variable& x);   // 0-d
Variable mean_all(const Variable& x);  // 0-d

// ---- matrix products ----------------------------------------------------------------------------
// op(a)·op(b): a [..., M, K] (or [..., K, M] when trans_a), b [..., K, N] (or [..., N, K] when trans_b);
// batch dims equal, or b 2-D and shared by every batch.
Variable matmul(const Variable& a, const Variable& b, bool trans_a = false, bool trans_b = false);
// x [..., in]·wᵀ + b: w [out, in], b [out] (b may be an undefined Variable).
Variable linear(const Variable& x, const Variable& w, const Variable& b);

// ---- shape --------------------------------------------------------------------------------------
Variable reshape(const Variable& x, const Shape& shape);  // copies when x's strides require it
Variable view(const Variable& x, const Shape& shape);     // x must be contiguous
Variable transpose(const Variable& x, int64_t d0, int64_t d1);
Variable permute(const Variable& x, const std::vector<int64_t>& order);
Variable narrow(const Variable& x, int64_t dim, int64_t start, int64_t length);
Variable contiguous(const Variable& x);
// x converted to dtype (a float dtype); the gradient is converted back to x's dtype. This is what mixed
// precision is built from: bf16 copies of fp32 master weights whose gradients land in fp32.
Variable to_dtype(const Variable& x, DType dtype);
Variable expand(const Variable& x, const Shape& shape);
Variable unsqueeze(const Variable& x, int64_t dim);
Variable squeeze(const Variable& x, int64_t dim);
Variable cat(const std::vector<Variable>& xs, int64_t dim);

// ---- softmax, normalisation, lookup, loss -------------------------------------------------------
Variable softmax(const Variable& x, bool causal = false);  // over the last dim; see pt::softmax for causal
Variable log_softmax(const Variable& x);
Variable layer_norm(const Variable& x, const Variable& weight, const Variable& bias, double eps);
// weight [V, C], ids (i32/i64, any shape; not differentiable) -> [..., C]. Row padding_idx gets no
// gradient (the forward still reads it), like torch.nn.Embedding.
Variable embedding(const Variable& weight, const Tensor& ids, int64_t padding_idx = -1);
// logits [N, V], targets [N] i64 -> 0-d loss over the rows whose target is not ignore_index.
Variable cross_entropy(const Variable& logits, const Tensor& targets, int64_t ignore_index = -100,
                       Reduction reduction = Reduction::mean);

// ---- masks and selection ------------------------------------------------------------------------
// Inverted dropout: zero each element with probability p and scale the rest by 1/(1-p). Identity when
// !training or p == 0. The mask comes from gen, so a given generator state reproduces it.
Variable dropout(const Variable& x, double p, Generator& gen, bool training);
Variable apply_mask(const Variable& x, const Tensor& keep);  // x where keep (u8) != 0, else 0; so is the grad
Variable masked_fill(const Variable& x, const Tensor& mask, double value);  // value where mask (u8) != 0
Variable where(const Tensor& cond, const Variable& a, const Variable& b);  // cond u8; all three broadcast

}  // namespace pt::autograd
