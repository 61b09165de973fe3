// CUDA entry points of the op set (implemented in tensor/ops/*.cu). Called only by the public ops in
// tensor/ops.h after argument validation, and only in builds with PT_CUDA. Each runs on
// pt::cuda::current_stream() and checks its launch.
#pragma once
#include "tensor/ops.h"

namespace pt::cuda_ops {

// copy.cu: dst[i] = convert(src[i]); src is already expanded to dst's shape; any strides.
void copy(const Tensor& dst, const Tensor& src);
void fill(const Tensor& t, double value);
void arange(const Tensor& out, int64_t start, int64_t step);
void uniform(const Tensor& out, double lo, double hi, uint64_t seed, uint64_t offset);
void normal(const Tensor& out, double mean, double std, uint64_t seed, uint64_t offset);

// elementwise.cu (out is allocated by the caller with the broadcast shape and right dtype)
void binary(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op);
void unary(const Tensor& out, const Tensor& x, UnaryOp op, double scalar);
void relu_backward(const Tensor& out, const Tensor& grad_out, const Tensor& x);
void compare(const Tensor& out, const Tensor& a, const Tensor& b, CompareOp op);
void compare_scalar(const Tensor& out, const Tensor& a, double s, CompareOp op);
void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b);
void dropout_mask(const Tensor& out, double p, uint64_t seed, uint64_t offset);

// reduce.cu (x contiguous; reduce over the middle of the [outer, n, inner] view of x; out has
// outer*inner elements). kind: 0 = sum, 1 = mean, 2 = max (values; NaN propagates).
void reduce_dim(const Tensor& out, const Tensor& x, int64_t outer, int64_t n, int64_t inner, int kind);
void argmax_dim(const Tensor& out, const Tensor& x, int64_t outer, int64_t n, int64_t inner);
void sum_all(const Tensor& out, const Tensor& x);
void sum_squares_accumulate(const Tensor& acc, const Tensor& x);  // acc (0-d f32/f64) += sum(x^2)

// softmax.cu (x contiguous)
Tensor softmax(const Tensor& x, bool causal);
Tensor log_softmax(const Tensor& x);
Tensor softmax_backward(const Tensor& y, const Tensor& grad_y);
Tensor log_softmax_backward(const Tensor& y, const Tensor& grad_y);

// layer_norm.cu (contiguous inputs)
LayerNormOut layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);
LayerNormGrads layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                   const Tensor& rstd);

// embedding.cu
Tensor embedding(const Tensor& weight, const Tensor& ids);
Tensor embedding_backward(const Tensor& grad_out, const Tensor& ids, int64_t num_rows, int64_t padding_idx);

// cross_entropy.cu
CrossEntropyOut cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index, Reduction r);
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, const CrossEntropyOut& fwd,
                              const Tensor& grad_loss, int64_t ignore_index, Reduction r);

// matmul.cu
void gemm(const Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, double alpha, double beta);
void syrk(const Tensor& h, const Tensor& x, double alpha, double beta);

// topk.cu
TopKOut topk(const Tensor& x, int64_t k, int64_t dim, bool largest);
Tensor kth_value_all(const Tensor& x, int64_t k);

// linalg.cu
Tensor cholesky(const Tensor& a, bool upper);
Tensor cholesky_inverse(const Tensor& factor, bool upper);
Tensor triangular_solve(const Tensor& a, const Tensor& b, bool upper, bool left, bool transpose);
// a f32/f64 square, unit column stride: the upper triangle copied onto the lower (to_lower) or the reverse.
void mirror_triangle(const Tensor& a, bool to_lower);

}  // namespace pt::cuda_ops
