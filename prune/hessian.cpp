// SparseGPT's running-average Hessian: argument checks, the unfused composition and the fused syrk update, and
// the one mirror of the finished matrix. The bf16 GEMM of the fused CUDA path is in hessian.cu.
#include "prune/hessian.h"

#include "tensor/nvtx.h"
#include "tensor/ops.h"

namespace pt::prune {

HessianKernel parse_hessian_kernel(const std::string& name) {
  if (name == "unfused") return HessianKernel::unfused;
  if (name == "fused") return HessianKernel::fused;
  PT_FAIL("Hessian kernel '", name, "' is unknown (allowed: unfused, fused)");
}

const char* hessian_kernel_name(HessianKernel k) { return k == HessianKernel::fused ? "fused" : "unfused"; }

HessianAccumulator::HessianAccumulator(int64_t cols, Device device) {
  PT_CHECK(cols > 0, "HessianAccumulator: cols = ", cols, " must be positive");
  H_ = Tensor::zeros({cols, cols}, DType::f32, device);
}

const Tensor& HessianAccumulator::H() const {
  if (lower_stale_) {
    symmetrize_(H_, /*from_upper=*/true);
    lower_stale_ = false;
  }
  return H_;
}

void HessianAccumulator::add_batch(const Tensor& x, int64_t sequences, HessianKernel kernel) {
  PT_CHECK(H_.defined(), "HessianAccumulator::add_batch: no Hessian yet (construct with HessianAccumulator(cols, device))");
  PT_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == cols(), "HessianAccumulator::add_batch: x ",
           x.defined() ? x.describe() : std::string("undefined"), " should be [..., ", cols(), "]");
  PT_CHECK(x.device() == H_.device(), "HessianAccumulator::add_batch: x ", x.describe(), " is not on the device of H ",
           H_.describe());
  PT_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f16 || x.dtype() == DType::bf16,
           "HessianAccumulator::add_batch: x is ", x.describe(), " (allowed: f32, f16, bf16)");
  PT_CHECK(sequences >= 1, "HessianAccumulator::add_batch: sequences = ", sequences, " must be >= 1");
  PT_NVTX_RANGE("prune/hessian");
  Tensor X = x.reshape({-1, cols()});
  // H *= n/(n+b); n += b; H += (2/n) XᵀX
  const double beta = double(nsamples) / double(nsamples + sequences);
  nsamples += sequences;
  const double alpha = 2.0 / double(nsamples);
  lower_stale_ = true;
#if PT_CUDA
  if (bf16_inputs && kernel == HessianKernel::fused && X.is_cuda()) {
    detail::cuda_syrk_bf16(H_, X.to(DType::bf16).contiguous(), alpha, beta);
    return;
  }
#endif
  X = bf16_inputs ? X.to(DType::bf16).to(DType::f32) : X.to(DType::f32);  // the same rounding as the bf16 GEMM
  if (kernel == HessianKernel::fused) {
    syrk_(H_, X, alpha, beta);
    return;
  }
  Tensor xtx = matmul(X, X, /*trans_a=*/true, /*trans_b=*/false);
  unary_(H_, H_, UnaryOp::mul_scalar, beta);
  unary_(xtx, xtx, UnaryOp::mul_scalar, alpha);
  binary_(H_, H_, xtx, BinaryOp::add);
}

}  // namespace pt::prune
