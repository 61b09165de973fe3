// SparseGPT's layer Hessian H = (2/n) sum over the tokens of n sequences of x xᵀ, kept as a running average
// so it never overflows: per batch of b sequences  H *= n/(n+b); n += b; H += (2/n) XᵀX  (X [tokens, cols]).
#pragma once
#include <cstdint>
#include <string>

#include "tensor/tensor.h"

namespace pt::prune {

// unfused: materialise XᵀX (pt::matmul), then scale H and add (separate ops, the benchmark baseline);
// fused:   one pt::syrk_ call whose alpha/beta do the whole update in place.
enum class HessianKernel { unfused, fused };
HessianKernel parse_hessian_kernel(const std::string& name);  // "unfused" | "fused"
const char* hessian_kernel_name(HessianKernel k);

class HessianAccumulator {
 public:
  int64_t nsamples = 0;  // sequences seen so far
  // Round X to bf16 before the product (fp32 accumulation): on CUDA a bf16 tensor-core GEMM (half the input
  // bytes); on the CPU the same rounding followed by the f32 product, so both compute the same function.
  bool bf16_inputs = false;

  HessianAccumulator() = default;
  HessianAccumulator(int64_t cols, Device device);
  // x [..., cols]: every token of `sequences` sequences (>= 1); f32, or f16/bf16 (converted to f32). The
  // device must be H's. Accumulates in f32 (TF32 follows pt::allow_tf32(), off by default). Each batch
  // updates the upper triangle of H only.
  void add_batch(const Tensor& x, int64_t sequences, HessianKernel kernel = HessianKernel::fused);
  // The running average, f32 [cols, cols], exactly symmetric: the first read after a batch mirrors the upper
  // triangle onto the lower one (pt::symmetrize_, a tiled transpose on CUDA), so a calibration pass pays for one
  // mirror per matrix, before its Cholesky, instead of one per batch. Undefined when default-constructed.
  const Tensor& H() const;
  int64_t cols() const { return H_.defined() ? H_.size(0) : 0; }

 private:
  Tensor H_;
  mutable bool lower_stale_ = false;  // batches were added since the last mirror
};

namespace detail {
#if PT_CUDA
// H = alpha·XᵀX + beta·H with X bf16 [n, d] (row-major, contiguous) and H f32 [d, d] (hessian.cu).
void cuda_syrk_bf16(const Tensor& h, const Tensor& x_bf16, double alpha, double beta);
#endif
}  // namespace detail

}  // namespace pt::prune
