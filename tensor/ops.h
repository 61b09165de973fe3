// The op set. Every op has a CPU implementation (tensor/ops/<family>.cpp, the reference) and a CUDA
// implementation (tensor/ops/<family>.cu, beside it). The public functions below validate their
// arguments (shapes, dtypes, devices; errors name the op and what was passed) and dispatch on device.
//
// Dtypes: CPU ops compute in f32/f64 (integer dtypes where noted); CUDA ops also accept f16/bf16 and
// compute in f32 internally. Anything else raises "op: dtype X not supported on device (allowed: ...)".
// Operands of one op must live on one device; mixing raises an error naming both devices.
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace pt {

// ---- element-wise (ops/elementwise.*) ------------------------------------------------------------
// Binary ops broadcast numpy-style; both operands must have the same dtype.
enum class BinaryOp { add, sub, mul, div, maximum, minimum };
Tensor binary(const Tensor& a, const Tensor& b, BinaryOp op);
inline Tensor add(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::add); }
inline Tensor sub(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::sub); }
inline Tensor mul(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::mul); }
inline Tensor div(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::div); }
inline Tensor maximum(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::maximum); }
inline Tensor minimum(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::minimum); }
// out = a op b written into an existing tensor (out may alias a); b broadcasts to out's shape.
void binary_(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op);

// Unary ops; `scalar` is the operand of the *_scalar kinds.
enum class UnaryOp { neg, relu, exp, log, sqrt, rsqrt, abs, square, add_scalar, mul_scalar, pow_scalar };
Tensor unary(const Tensor& x, UnaryOp op, double scalar = 0.0);
void unary_(const Tensor& out, const Tensor& x, UnaryOp op, double scalar = 0.0);  // out may alias x
inline Tensor neg(const Tensor& x) { return unary(x, UnaryOp::neg); }
inline Tensor relu(const Tensor& x) { return unary(x, UnaryOp::relu); }
inline Tensor exp(const Tensor& x) { return unary(x, UnaryOp::exp); }
inline Tensor log(const Tensor& x) { return unary(x, UnaryOp::log); }
inline Tensor sqrt(const Tensor& x) { return unary(x, UnaryOp::sqrt); }
inline Tensor rsqrt(const Tensor& x) { return unary(x, UnaryOp::rsqrt); }
inline Tensor abs(const Tensor& x) { return unary(x, UnaryOp::abs); }
inline Tensor square(const Tensor& x) { return unary(x, UnaryOp::square); }
inline Tensor add_scalar(const Tensor& x, double s) { return unary(x, UnaryOp::add_scalar, s); }
inline Tensor mul_scalar(const Tensor& x, double s) { return unary(x, UnaryOp::mul_scalar, s); }
inline Tensor pow_scalar(const Tensor& x, double p) { return unary(x, UnaryOp::pow_scalar, p); }

Tensor relu_backward(const Tensor& grad_out, const Tensor& x);  // grad_out where x > 0, else 0

// Comparisons give u8 (0/1) tensors; the scalar form compares against a constant.
enum class CompareOp { eq, ne, lt, le, gt, ge };
Tensor compare(const Tensor& a, const Tensor& b, CompareOp op);
Tensor compare_scalar(const Tensor& a, double s, CompareOp op);

// where(cond, a, b): cond is u8; all three broadcast together; a and b share a dtype.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);  // value where mask != 0
Tensor apply_mask(const Tensor& x, const Tensor& keep);  // x where keep != 0, else exactly 0 (keep: u8)

// Dropout keep-mask scaled by 1/(1-p): values are 0 or 1/(1-p), in dtype. Same values on every device.
Tensor dropout_mask(const Shape& shape, double p, Generator& gen, DType dtype, Device device);

// ---- reductions (ops/reduce.*) -------------------------------------------------------------------
// Accumulation is in f64 on the CPU and f32 (f64 for f64 inputs) on CUDA.
Tensor sum(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor mean(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);     // values
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // i64; first index on ties
Tensor sum_all(const Tensor& x);   // 0-d tensor of x's dtype
Tensor mean_all(const Tensor& x);  // 0-d tensor of x's dtype
// Sum of a broadcast result back to `shape` (the gradient of a broadcasting op).
Tensor sum_to(const Tensor& x, const Shape& shape);
// sqrt(sum over tensors of sum of squares), as a 0-d f32 tensor (f64 for f64 inputs) on their device.
Tensor global_norm(const std::vector<Tensor>& xs);

// ---- softmax over the last dim (ops/softmax.*) ---------------------------------------------------
// Math in f32 (f64 for f64), result in x's dtype. With causal=true the last two dims are (Tq, Tk)
// and key j is masked for query i when j > i + (Tk - Tq) (those probabilities are exactly 0).
Tensor softmax(const Tensor& x, bool causal = false);
Tensor log_softmax(const Tensor& x);
Tensor softmax_backward(const Tensor& y, const Tensor& grad_y);      // y*(g - sum(g*y))
Tensor log_softmax_backward(const Tensor& y, const Tensor& grad_y);  // g - exp(y)*sum(g)

// ---- layer norm over the last dim (ops/layer_norm.*) ----------------------------------------------
struct LayerNormOut { Tensor y, mean, rstd; };  // mean/rstd: f32 [rows] (f64 for f64 input)
LayerNormOut layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);
struct LayerNormGrads { Tensor dx, dweight, dbias; };
LayerNormGrads layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                   const Tensor& mean, const Tensor& rstd);

// ---- embedding (ops/embedding.*) -----------------------------------------------------------------
// weight [V, C], ids (i32/i64) of any shape -> [..., C]. Out-of-range ids raise an error.
Tensor embedding(const Tensor& weight, const Tensor& ids);
// Scatter-add of grad_out [..., C] into a zero [num_rows, C]; row padding_idx (if >= 0) gets nothing.
Tensor embedding_backward(const Tensor& grad_out, const Tensor& ids, int64_t num_rows, int64_t padding_idx = -1);

// ---- cross-entropy with ignore-index, fused log-softmax + NLL (ops/cross_entropy.*) ---------------
enum class Reduction { mean, sum };
struct CrossEntropyOut {
  Tensor loss;   // 0-d f32 (f64 for f64 logits): mean or sum of -log p[target] over non-ignored rows
  Tensor lse;    // [N] f32/f64: log-sum-exp of each row (saved for backward)
  Tensor count;  // 0-d i64: number of non-ignored rows
};
// logits [N, V] (f32/f64; f16/bf16 on CUDA), targets [N] i64. Targets out of [0, V) that are not
// ignore_index raise an error. A mean over zero rows is 0.
CrossEntropyOut cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100,
                              Reduction reduction = Reduction::mean);
// d loss / d logits given d loss (a 0-d tensor); result has logits' dtype.
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, const CrossEntropyOut& fwd,
                              const Tensor& grad_loss, int64_t ignore_index = -100,
                              Reduction reduction = Reduction::mean);

// ---- matrix products (ops/matmul.*): BLAS on the CPU, cuBLAS on CUDA (TF32 off by default) --------
// op(A)·op(B) with A [..., M, K] ([..., K, M] when trans_a) and B [..., K, N] ([..., N, K] when
// trans_b). Batch dims must be equal, or B is 2-D and shared by every batch. Strided views whose last
// two dims are BLAS-compatible (unit stride in one of them) are used in place; others are copied.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
// C = alpha·op(A)·op(B) + beta·C in place; C 2-D (may be a view with unit last stride) or batched.
void gemm_(const Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, double alpha,
           double beta);
// x [..., in]·weightᵀ [out, in] + bias [out] (bias may be undefined) -> [..., out].
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);
// H = alpha·XᵀX + beta·H in place, X [n, d], H [d, d] (f32/f64), like BLAS syrk: the result is in the upper
// triangle (diagonal included); the strict lower triangle is unspecified afterwards. An accumulation of many
// updates calls symmetrize_(H) once at the end instead of mirroring d² elements every time.
void syrk_(const Tensor& h, const Tensor& x, double alpha, double beta);
void set_allow_tf32(bool allow);  // CUDA fp32 products on tensor cores (off by default)
bool allow_tf32();

// ---- top-k and order statistics (ops/topk.*) ----------------------------------------------------
struct TopKOut { Tensor values, indices; };  // indices i64; sorted (largest first if largest)
TopKOut topk(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true);
// k-th smallest value (1-based, like torch.kthvalue) over all elements, as a 0-d tensor.
Tensor kth_value_all(const Tensor& x, int64_t k);

// ---- dense linear algebra (ops/linalg.*): LAPACKE on the CPU, cuSOLVER/cuBLAS on CUDA -------------
// Square 2-D f32/f64 matrices. cholesky throws NotPositiveDefinite (op, size, failing minor) instead of
// returning garbage.
Tensor cholesky(const Tensor& a, bool upper = false);  // A = L·Lᵀ (or Uᵀ·U when upper)
Tensor cholesky_inverse(const Tensor& factor, bool upper = false);  // A⁻¹ (full, symmetric) from its factor
// Solve op(A)·X = B (left) or X·op(A) = B (right) for triangular A; op(A) = Aᵀ when transpose.
Tensor triangular_solve(const Tensor& a, const Tensor& b, bool upper, bool left = true, bool transpose = false);
// Copies the upper triangle of a (f32/f64, square, unit column stride) onto the lower one in place, or the
// lower onto the upper when !from_upper, so a is exactly symmetric (on CUDA a tiled, coalesced transpose).
void symmetrize_(const Tensor& a, bool from_upper = true);

// ---- shape utilities (ops/copy.*) ----------------------------------------------------------------
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);

}  // namespace pt
