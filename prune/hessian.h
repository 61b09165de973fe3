// SparseGPT's layer Hessian H = (2/n) sum over the tokens of n sequences of x xᵀ, kept as a running average
// so it never overflows: per batch of b sequences  H *= n/(n+b); n += b; H += (2/n) XᵀX  (X [tokens, cols]);
// or, with use_exact_sum() ([prune] statistics_sum = exact), as the exact sum of every sequence's XᵀX
// (prune/exact_sum.h): the same bits for any batches, order, ranks and threads.
#pragma once
#include <cstdint>
#include <string>

#include "prune/exact_sum.h"
#include "tensor/kernel_registry.h"
#include "tensor/tensor.h"

namespace pt::prune {

// The kernel family of one batch's update (prune/kernel_families.cpp registers its variants):
//   H = alpha·XᵀX + beta·H in place; H f32 [d, d], of which the upper triangle (diagonal included) must be
//   written and the strict lower triangle is left unspecified; X [n, d] contiguous, f32, or bf16 (activations
//   already rounded: products of the bf16 values, accumulated in f32).
//   reference  double loops over the upper triangle (CPU)
//   unfused    materialise XᵀX (pt::matmul), then scale H and add: separate ops, the benchmark baseline
//   fused      one pt::syrk_ whose alpha/beta do the whole update in place; bf16 X on CUDA: a bf16 tensor-core GEMM
//   bf16       X rounded to bf16 (half the bytes), products accumulated in f32: on the CPU chunks of tokens widened
//              into a cache-sized buffer and added with ssyrk; on CUDA the bf16 tensor-core GEMM
using HessianUpdate = void(const Tensor& H, const Tensor& X, double alpha, double beta);
kernels::Family<HessianUpdate>& hessian_family();

class HessianAccumulator {
 public:
  int64_t nsamples = 0;  // sequences seen so far
  // Round X to bf16 before the product (fp32 accumulation): on CUDA a bf16 tensor-core GEMM (half the input
  // bytes); on the CPU the same rounding followed by the f32 product, so both compute the same function.
  bool bf16_inputs = false;

  HessianAccumulator() = default;
  HessianAccumulator(int64_t cols, Device device);
  // Sum exactly (before the first batch): each sequence's XᵀX, computed alone (prune/window_terms.h), goes into an
  // int64 fixed-point sum on the host (8 bytes per entry); the f32 H is made from it once, when first read, and
  // the sum is then released (no batch may follow). The hessian_family() variants are not used.
  void use_exact_sum();
  bool exact() const { return exact_; }
  // The exact sum (for summing across ranks before H is read).
  ExactSum& exact_sum();
  // x [..., cols]: every token of `sequences` sequences (>= 1); f32, or f16/bf16 (converted to f32). The
  // device must be H's. Accumulates in f32 (TF32 follows pt::allow_tf32(), off by default). Each batch
  // updates the upper triangle of H only. `variant` names a hessian_family() variant ("" = its selection).
  void add_batch(const Tensor& x, int64_t sequences, const std::string& variant = "");
  // The running average, f32 [cols, cols], exactly symmetric: the first read after a batch mirrors the upper
  // triangle onto the lower one (pt::symmetrize_, a tiled transpose on CUDA), so a calibration pass pays for one
  // mirror per matrix, before its Cholesky, instead of one per batch. Undefined when default-constructed.
  const Tensor& H() const;
  int64_t cols() const { return cols_; }  // 0 when default-constructed

 private:
  void add_batch_exact(const Tensor& x, int64_t sequences);

  mutable Tensor H_;
  int64_t cols_ = 0;
  Device device_ = Device::cpu;
  mutable bool lower_stale_ = false;  // batches were added since the last mirror
  bool exact_ = false;
  mutable ExactSum sum_;              // exact mode, until H is read
};

namespace detail {
#if PT_CUDA
// H = alpha·XᵀX + beta·H with X bf16 [n, d] (row-major, contiguous) and H f32 [d, d] (hessian.cu).
void cuda_syrk_bf16(const Tensor& h, const Tensor& x_bf16, double alpha, double beta);
#endif
}  // namespace detail

}  // namespace pt::prune
