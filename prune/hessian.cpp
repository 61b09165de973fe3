// SparseGPT's running-average Hessian: argument checks, the unfused composition and the fused syrk update, and
// the one mirror of the finished matrix. The bf16 GEMM of the fused CUDA path is in hessian.cu.
#include "prune/hessian.h"

#include "prune/window_terms.h"
#include "tensor/nvtx.h"
#include "tensor/ops.h"

namespace pt::prune {

HessianAccumulator::HessianAccumulator(int64_t cols, Device device) : cols_(cols), device_(device) {
  PT_CHECK(cols > 0, "HessianAccumulator: cols = ", cols, " must be positive");
  H_ = Tensor::zeros({cols, cols}, DType::f32, device);
}

const Tensor& HessianAccumulator::H() const {
  if (exact_ && sum_.defined()) {  // the first read: H = (2/n) · the sum, rounded once; the sum is released
    PT_CHECK(nsamples > 0, "HessianAccumulator::H: the exact sum has seen no calibration sequence");
    H_ = sum_.to_f32(2.0 / double(nsamples), device_);
    sum_ = ExactSum();
    lower_stale_ = true;
  }
  if (lower_stale_) {
    symmetrize_(H_, /*from_upper=*/true);
    lower_stale_ = false;
  }
  return H_;
}

void HessianAccumulator::add_batch(const Tensor& x, int64_t sequences, const std::string& variant) {
  PT_CHECK(cols_ > 0, "HessianAccumulator::add_batch: no Hessian yet (construct with HessianAccumulator(cols, device))");
  PT_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == cols(), "HessianAccumulator::add_batch: x ",
           x.defined() ? x.describe() : std::string("undefined"), " should be [..., ", cols(), "]");
  PT_CHECK(x.device() == device_, "HessianAccumulator::add_batch: x ", x.describe(), " is not on the device of H (",
           device_name(device_), ")");
  PT_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f16 || x.dtype() == DType::bf16,
           "HessianAccumulator::add_batch: x is ", x.describe(), " (allowed: f32, f16, bf16)");
  PT_CHECK(sequences >= 1, "HessianAccumulator::add_batch: sequences = ", sequences, " must be >= 1");
  if (exact_) return add_batch_exact(x, sequences);
  const auto& update = hessian_family().get(variant, H_.device());
  PT_NVTX_RANGE("prune/hessian");
  // H *= n/(n+b); n += b; H += (2/n) XᵀX
  const double beta = double(nsamples) / double(nsamples + sequences);
  nsamples += sequences;
  const double alpha = 2.0 / double(nsamples);
  lower_stale_ = true;
  update(H_, x.reshape({-1, cols()}).to(bf16_inputs ? DType::bf16 : DType::f32).contiguous(), alpha, beta);
}

void HessianAccumulator::use_exact_sum() {
  PT_CHECK(cols_ > 0 && nsamples == 0 && !exact_, "HessianAccumulator::use_exact_sum: call it once, on a constructed "
           "accumulator, before its first batch");
  exact_ = true;
  H_ = Tensor();
  sum_ = ExactSum(cols_, cols_);
}

ExactSum& HessianAccumulator::exact_sum() {
  PT_CHECK(exact_ && sum_.defined(), "HessianAccumulator::exact_sum: ",
           exact_ ? "H has been read already (the exact sum is released then)" : "the accumulator is not exact");
  return sum_;
}

void HessianAccumulator::add_batch_exact(const Tensor& x, int64_t sequences) {
  PT_CHECK(sum_.defined(), "HessianAccumulator::add_batch: H has been read already; an exact sum takes no batch after");
  PT_CHECK(x.numel() % (sequences * cols_) == 0, "HessianAccumulator::add_batch: x ", x.describe(), " does not hold ",
           sequences, " sequences of equal length");
  // Each sequence alone (rounded to bf16 first when asked, like the running average's inputs).
  const Tensor all = x.reshape({sequences, -1, cols_});
  for (int64_t s = 0; s < sequences; ++s) {
    Tensor w = all.select(0, s);
    if (bf16_inputs) w = w.to(DType::bf16);
    detail::add_window_gram(sum_, w.to(DType::f32).contiguous());
  }
  nsamples += sequences;
}

namespace detail {

using HessianVariant = kernels::Family<HessianUpdate>::Variant;

// The oracle: every entry of the upper triangle as a double sum over the tokens, one rounding to f32.
HessianVariant hessian_reference_variant() {
  return {{.name = "reference",
           .devices = {Device::cpu},
           .dtypes = {DType::f32, DType::bf16},
           .summary = "double loops over the upper triangle, one rounding per entry"},
          [](const Tensor& H, const Tensor& X, double alpha, double beta) {
            const Tensor x = X.to(DType::f64).contiguous();
            const int64_t n = x.size(0), d = x.size(1);
            const double* xv = x.data<double>();
            float* h = H.data<float>();
#pragma omp parallel for schedule(dynamic, 8)
            for (int64_t i = 0; i < d; ++i)
              for (int64_t j = i; j < d; ++j) {
                double acc = 0.0;
                for (int64_t t = 0; t < n; ++t) acc += xv[t * d + i] * xv[t * d + j];
                h[i * d + j] = float(alpha * acc + beta * double(h[i * d + j]));
              }
          }};
}

HessianVariant hessian_unfused_variant() {
  return {{.name = "unfused",
           .devices = {Device::cpu, Device::cuda},
           .dtypes = {DType::f32, DType::bf16},
           .summary = "XᵀX materialised by matmul, then H scaled and added: three passes over d²"},
          [](const Tensor& H, const Tensor& X, double alpha, double beta) {
            const Tensor x = X.to(DType::f32);
            Tensor xtx = matmul(x, x, /*trans_a=*/true, /*trans_b=*/false);
            unary_(H, H, UnaryOp::mul_scalar, beta);
            unary_(xtx, xtx, UnaryOp::mul_scalar, alpha);
            binary_(H, H, xtx, BinaryOp::add);
          }};
}

HessianVariant hessian_fused_variant() {
  return {{.name = "fused",
           .devices = {Device::cpu, Device::cuda},
           .dtypes = {DType::f32, DType::bf16},
           .summary = "one syrk with alpha and beta (BLAS / cuBLAS); bf16 X on CUDA: a bf16 tensor-core GEMM"},
          [](const Tensor& H, const Tensor& X, double alpha, double beta) {
#if PT_CUDA
            if (X.dtype() == DType::bf16 && X.is_cuda()) return cuda_syrk_bf16(H, X, alpha, beta);
#endif
            syrk_(H, X.to(DType::f32), alpha, beta);
          }};
}

}  // namespace detail

}  // namespace pt::prune
