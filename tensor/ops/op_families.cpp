// The softmax, layer_norm and attention families: their variants (compositions of ops beside the ops themselves)
// and one registration line each.
#include "tensor/ops/op_families.h"

#include <limits>

#include "tensor/ops/causal_attention.h"

namespace pt {

namespace {

using kernels::Cost;
using kernels::Problem;

const std::vector<DType> kAnyFloat = {DType::f32, DType::f64, DType::f16, DType::bf16};

// Key j is masked for query i when j > i + (Tk - Tq): a u8 [Tq, Tk] on the device (1 = masked).
Tensor causal_mask(int64_t tq, int64_t tk, Device device) {
  const Tensor i = Tensor::arange(0, tq, 1, DType::f32, device).reshape({tq, 1});
  const Tensor j = Tensor::arange(0, tk, 1, DType::f32, device).reshape({1, tk});
  return compare(j, add_scalar(i, double(tk - tq)), CompareOp::gt);
}

Tensor softmax_unfused(const Tensor& x, bool causal) {
  Tensor z = x;
  if (causal) z = masked_fill(x, causal_mask(x.size(-2), x.size(-1), x.device()), -std::numeric_limits<double>::infinity());
  const Tensor e = exp(sub(z, max(z, -1, /*keepdim=*/true)));
  return div(e, sum(e, -1, /*keepdim=*/true));
}

LayerNormOut layer_norm_unfused(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  const Tensor mu = mean(x, -1, /*keepdim=*/true);
  const Tensor xc = sub(x, mu);
  const Tensor rstd = rsqrt(add_scalar(mean(square(xc), -1, /*keepdim=*/true), eps));
  const Tensor y = add(mul(mul(xc, rstd), w), b);
  const DType stat = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  const int64_t rows = x.numel() / x.size(-1);
  return {y, mu.reshape({rows}).to(stat), rstd.reshape({rows}).to(stat)};
}

Tensor attention_unfused(const Tensor& q, const Tensor& k, const Tensor& v) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  const Tensor probs = softmax(matmul(q, k, false, true), /*causal=*/true);  // [B, H, Tq, Tk]
  return matmul(probs, v).permute({0, 2, 1, 3}).contiguous().reshape({B, T, H * D});
}

}  // namespace

kernels::Family<SoftmaxFn>& softmax_family() {
  static kernels::Family<SoftmaxFn> family({
      .name = "softmax",
      .summary = "softmax over the last dim of x, optionally causal over the last two (Tq, Tk)",
      .reference = "fused",
      .fused_order = {"fused"},
      .unfused_order = {"unfused"},
      .cost = [](const Problem& p) {  // x [batch, tq, tk] read, y written; max, subtract, exp, sum, divide
        const double n = double(p.dim("batch")) * double(p.dim("tq")) * double(p.dim("tk"));
        return Cost{.bytes = 2 * n * double(dtype_size(p.dtype)), .flops = 5 * n};
      }});
  static const bool registered = [] {
    family.add({{.name = "fused", .devices = {Device::cpu, Device::cuda}, .dtypes = kAnyFloat,
                 .summary = "the op: one pass per row (CPU loops: the reference; CUDA: one kernel)"},
                [](const Tensor& x, bool causal) { return softmax(x, causal); }});
    family.add({{.name = "unfused", .devices = {Device::cpu, Device::cuda}, .dtypes = kAnyFloat,
                 .summary = "max, subtract, exp, sum, divide: five tensor ops"},
                softmax_unfused});
    return true;
  }();
  (void)registered;
  return family;
}

kernels::Family<LayerNormFn>& layer_norm_family() {
  static kernels::Family<LayerNormFn> family({
      .name = "layer_norm",
      .summary = "y = (x - mean)·rstd·w + b over the last dim, with mean and rstd per row",
      .reference = "fused",
      .fused_order = {"fused"},
      .unfused_order = {"unfused"},
      .cost = [](const Problem& p) {  // x read, y written, w and b, mean and rstd; ~8 flops per element
        const double rows = double(p.dim("rows")), c = double(p.dim("cols")), e = double(dtype_size(p.dtype));
        return Cost{.bytes = 2 * rows * c * e + 2 * c * e + 8 * rows, .flops = 8 * rows * c};
      }});
  static const bool registered = [] {
    family.add({{.name = "fused", .devices = {Device::cpu, Device::cuda}, .dtypes = kAnyFloat,
                 .summary = "the op: one pass per row (CPU loops: the reference; CUDA: one kernel)"},
                [](const Tensor& x, const Tensor& w, const Tensor& b, double eps) { return layer_norm(x, w, b, eps); }});
    family.add({{.name = "unfused", .devices = {Device::cpu, Device::cuda}, .dtypes = kAnyFloat,
                 .summary = "mean, centre, mean of squares, rsqrt, scale, shift: tensor ops"},
                layer_norm_unfused});
    return true;
  }();
  (void)registered;
  return family;
}

kernels::Family<AttentionFn>& attention_family() {
  static kernels::Family<AttentionFn> family({
      .name = "attention",
      .summary = "causal attention for inference: q (scaled), k, v [B, H, T, D] -> context [B, Tq, H·D]",
      .reference = "unfused",
      .fused_order = {"blocked", "unfused"},
      .unfused_order = {"unfused"},
      .cost = [](const Problem& p) {  // q, k, v read, the context written; the two products over visible keys
        const double B = double(p.dim("B")), H = double(p.dim("H")), tq = double(p.dim("Tq")),
                     tk = double(p.dim("Tk")), D = double(p.dim("D")), e = double(dtype_size(p.dtype));
        const double visible = tq * tk - tq * (tq - 1) / 2;  // causal pairs (query i sees tk - tq + i + 1 keys)
        return Cost{.bytes = e * B * H * D * (2 * tq + 2 * tk), .flops = 4 * B * H * D * visible};
      }});
  static const bool registered = [] {
    family.add({{.name = "unfused", .devices = {Device::cpu, Device::cuda}, .dtypes = kAnyFloat,
                 .summary = "q·kᵀ, causal softmax, ·v: the training path's composition (the reference)",
                 // Every score is computed, stored and read back: Tq·Tk per head, twice.
                 .cost = [](const Problem& p) {
                   const double B = double(p.dim("B")), H = double(p.dim("H")), tq = double(p.dim("Tq")),
                                tk = double(p.dim("Tk")), D = double(p.dim("D")), e = double(dtype_size(p.dtype));
                   return Cost{.bytes = e * B * H * (D * (2 * tq + 2 * tk) + 4 * tq * tk),
                               .flops = 4 * B * H * D * tq * tk};
                 }},
                attention_unfused});
    family.add({{.name = "blocked", .devices = {Device::cpu}, .dtypes = {DType::f32, DType::f64},
                 .summary = "128 queries at a time against the keys they see; no [T, T] scores (CPU)"},
                causal_attention_cpu});
    return true;
  }();
  (void)registered;
  return family;
}

}  // namespace pt
