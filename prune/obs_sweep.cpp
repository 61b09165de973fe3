// The in-block OBS sweep: argument checks, the CPU reference loops and the unfused per-column composition of
// tensor ops. The fused CUDA kernel is in obs_sweep.cu.
#include "prune/obs_sweep.h"

#include "prune/mask.h"
#include "tensor/nvtx.h"
#include "tensor/ops.h"

namespace pt::prune {
namespace {

// N:M inside the sweep: in columns [i, i+m) of one row, prune the n lowest (forced first, then
// w²/U[c,c]², then lower column) of the current weights.
void choose_nm_group(const float* w, const float* U, int64_t B, uint8_t* keep, const uint8_t* prev, int64_t i,
                     int64_t n, int64_t m) {
  for (int64_t a = 0; a < m; ++a) {
    const int64_t ca = i + a;
    const bool forced_a = prev && prev[ca] == 0;
    const float da = U[ca * B + ca];
    const float sa = canonical_score((w[ca] * w[ca]) / (da * da));
    int64_t rank = 0;
    for (int64_t b = 0; b < m; ++b) {
      if (b == a) continue;
      const int64_t cb = i + b;
      const bool forced_b = prev && prev[cb] == 0;
      const float db = U[cb * B + cb];
      const float sb = canonical_score((w[cb] * w[cb]) / (db * db));
      const bool before = forced_b != forced_a ? forced_b : (sb < sa || (sb == sa && b < a));
      rank += before;
    }
    keep[ca] = rank < n ? 0 : 1;
  }
}

void sweep_reference(const ObsSweepArgs& a) {
  const Tensor &W1 = a.W1, &U1 = a.U1, &keep1 = a.keep1, &Err1 = a.Err1, &loss_rows = a.loss_rows, &prev1 = a.prev_keep1;
  const SparsityPattern& pattern = a.pattern;
  const int64_t rows = W1.size(0), B = W1.size(1), ldw = W1.stride(0);
  float* W = W1.data<float>();
  const float* U = U1.data<float>();
  uint8_t* keep = keep1.data<uint8_t>();
  float* err = Err1.data<float>();
  float* loss = loss_rows.data<float>();
  const uint8_t* prev = prev1.defined() ? prev1.data<uint8_t>() : nullptr;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float* w = W + r * ldw;
    uint8_t* k = keep + r * B;
    const uint8_t* p = prev ? prev + r * B : nullptr;
    double row_loss = 0.0;
    for (int64_t i = 0; i < B; ++i) {
      if (pattern.is_nm() && i % pattern.m == 0) choose_nm_group(w, U, B, k, p, i, pattern.n, pattern.m);
      const float d = U[i * B + i];
      const float q = k[i] ? w[i] : 0.0f;
      const float e = (w[i] - q) / d;
      if (e != 0.0f)
        for (int64_t c = i + 1; c < B; ++c) w[c] -= e * U[i * B + c];
      w[i] = q;
      err[r * B + i] = e;
      row_loss += double(e) * double(e);
    }
    loss[r] += float(row_loss / 2.0);
  }
}

// One small group of ops per column, like the PyTorch loop: the benchmark baseline for the fused kernel.
void sweep_unfused(const ObsSweepArgs& a) {
  const Tensor &W1 = a.W1, &U1 = a.U1, &keep1 = a.keep1, &Err1 = a.Err1, &loss_rows = a.loss_rows, &prev1 = a.prev_keep1;
  const SparsityPattern& pattern = a.pattern;
  const int64_t rows = W1.size(0), B = W1.size(1);
  const Tensor diag = U1.as_strided({B}, {B + 1}, U1.offset());  // U1 is contiguous here
  const Tensor loss2d = loss_rows.view({rows, 1});
  for (int64_t i = 0; i < B; ++i) {
    if (pattern.is_nm() && i % pattern.m == 0) {
      const Tensor scores = div(square(W1.narrow(1, i, pattern.m)), square(diag.narrow(0, i, pattern.m)));
      const Tensor prev = prev1.defined() ? prev1.narrow(1, i, pattern.m) : Tensor();
      keep1.narrow(1, i, pattern.m).copy_(select_lowest_k(scores, pattern.n, MaskGroup::row, prev, "unfused"));
    }
    Tensor w = W1.narrow(1, i, 1);
    const Tensor q = apply_mask(w, keep1.narrow(1, i, 1));
    const Tensor e = div(sub(w, q), U1.narrow(0, i, 1).narrow(1, i, 1));
    if (i + 1 < B)  // W1[:, i+1:] -= e ⊗ U[i, i+1:]
      gemm_(W1.narrow(1, i + 1, B - i - 1), e, U1.narrow(0, i, 1).narrow(1, i + 1, B - i - 1), false, false, -1.0, 1.0);
    w.copy_(q);
    Err1.narrow(1, i, 1).copy_(e);
    binary_(loss2d, loss2d, mul_scalar(square(e), 0.5), BinaryOp::add);
  }
}

}  // namespace

void obs_sweep_block(const Tensor& W1, const Tensor& U1, const Tensor& keep1, const Tensor& Err1,
                     const Tensor& loss_rows, const SparsityPattern& pattern, const Tensor& prev_keep1,
                     const std::string& variant) {
  const char* op = "obs_sweep_block";
  check_weight_matrix(op, W1, "W1");
  check_weight_matrix(op, U1, "U1");
  check_weight_matrix(op, Err1, "Err1");
  const int64_t rows = W1.size(0), B = W1.size(1);
  PT_CHECK(W1.stride(1) == 1 || B <= 1, op, ": W1 ", W1.describe(), " needs unit column stride");
  PT_CHECK(U1.size(0) == B && U1.size(1) == B && U1.device() == W1.device(), op, ": U1 ", U1.describe(),
           " should be [", B, ", ", B, "] on the device of W1 ", W1.describe());
  PT_CHECK(keep1.defined(), op, ": keep1 is undefined (give a u8 [rows, B] mask)");
  check_keep_mask(op, keep1, W1, "keep1");
  PT_CHECK(keep1.is_contiguous(), op, ": keep1 ", keep1.describe(), " must be contiguous");
  PT_CHECK(Err1.shape() == W1.shape() && Err1.is_contiguous() && Err1.device() == W1.device(), op, ": Err1 ",
           Err1.describe(), " should be a contiguous f32 ", W1.describe());
  PT_CHECK(loss_rows.defined() && loss_rows.dtype() == DType::f32 && loss_rows.dim() == 1 &&
               loss_rows.size(0) == rows && loss_rows.is_contiguous() && loss_rows.device() == W1.device(),
           op, ": loss_rows ", loss_rows.defined() ? loss_rows.describe() : std::string("undefined"),
           " should be a contiguous f32 [", rows, "] on the device of W1");
  check_keep_mask(op, prev_keep1, W1, "prev_keep1");
  pattern.validate();
  if (pattern.is_nm()) {
    PT_CHECK(B % pattern.m == 0, op, ": the block's ", B, " columns are not a multiple of M for ", pattern.describe(),
             " (choose a blocksize that is a multiple of ", pattern.m, ")");
    check_prev_keep_fits(op, prev_keep1, pattern.n, MaskGroup::row, pattern.m);
  }
  const Tensor prev1 = pattern.is_nm() && prev_keep1.defined() ? prev_keep1.contiguous() : Tensor();
  if (rows == 0 || B == 0) return;
  const auto& sweep = obs_sweep_family().get(variant, W1.device());
  PT_NVTX_RANGE("prune/obs_sweep");
  sweep({W1, U1.contiguous(), keep1, Err1, loss_rows, prev1, pattern});
}

namespace detail {

using ObsSweepVariant = kernels::Family<ObsSweep>::Variant;

ObsSweepVariant obs_sweep_reference_variant() {
  return {{.name = "reference",
           .devices = {Device::cpu},
           .dtypes = {DType::f32},
           .summary = "CPU loops, one row at a time, rows in parallel"},
          sweep_reference};
}

ObsSweepVariant obs_sweep_unfused_variant() {
  return {{.name = "unfused",
           .devices = {Device::cpu, Device::cuda},
           .dtypes = {DType::f32},
           .summary = "a few tensor ops per column, like the PyTorch inner loop"},
          sweep_unfused};
}

}  // namespace detail

}  // namespace pt::prune
