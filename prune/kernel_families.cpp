// The pruning kernel families (tensor/kernel_registry.h) and the list of their variants: each variant is defined
// in its own file and registered here with one line (its maker declared beside it). Adding a variant to a family:
// write its file, declare its maker and add it to the family's list below.
#include "prune/hessian.h"
#include "prune/mask.h"
#include "prune/obs_sweep.h"
#include "prune/sparsegpt.h"

namespace pt::prune {

namespace detail {
using kernels::Family;
Family<HessianUpdate>::Variant hessian_reference_variant();  // hessian.cpp
Family<HessianUpdate>::Variant hessian_unfused_variant();    // hessian.cpp
Family<HessianUpdate>::Variant hessian_fused_variant();      // hessian.cpp
Family<HessianUpdate>::Variant hessian_bf16_variant();       // hessian_bf16.cpp
Family<InverseFactorFn>::Variant inverse_factor_reference_variant();      // inverse_factor.cpp
Family<InverseFactorFn>::Variant inverse_factor_chol_inv_chol_variant();  // inverse_factor.cpp
Family<ObsSweep>::Variant obs_sweep_reference_variant();  // obs_sweep.cpp
Family<ObsSweep>::Variant obs_sweep_unfused_variant();    // obs_sweep.cpp
Family<MaskSelect>::Variant mask_reference_variant();  // mask.cpp
Family<MaskSelect>::Variant mask_unfused_variant();    // mask.cpp
#if PT_CUDA
Family<ObsSweep>::Variant obs_sweep_fused_variant();     // obs_sweep.cu
Family<ObsSweep>::Variant obs_sweep_two_rows_variant();  // obs_sweep_two_rows.cu
Family<MaskSelect>::Variant mask_fused_variant();        // mask.cu
#endif
}  // namespace detail

kernels::Family<HessianUpdate>& hessian_family() {
  static kernels::Family<HessianUpdate> family({
      .name = "hessian",
      .summary = "H = alpha·XᵀX + beta·H (upper triangle), X [tokens, d] f32 or bf16, H f32",
      .reference = "reference",
      .fused_order = {"fused"},
      .unfused_order = {"unfused"},
      .cost = [](const kernels::Problem& p) {
        const double n = double(p.dim("tokens")), d = double(p.dim("d"));
        return kernels::Cost{.bytes = n * d * double(dtype_size(p.dtype)) + 8.0 * d * (d + 1) / 2,
                             .flops = n * d * (d + 1)};
      }});
  static const bool registered = [] {
    family.add(detail::hessian_reference_variant());
    family.add(detail::hessian_unfused_variant());
    family.add(detail::hessian_fused_variant());
    family.add(detail::hessian_bf16_variant());
    return true;
  }();
  (void)registered;
  return family;
}

kernels::Family<InverseFactorFn>& inverse_factor_family() {
  static kernels::Family<InverseFactorFn> family({
      .name = "inverse_factor",
      .summary = "U = the upper Cholesky factor of Â⁻¹, Â = A (symmetric, f32 [d, d]) with a given diagonal",
      .reference = "reference",
      .fused_order = {"chol_inv_chol"},
      .unfused_order = {"chol_inv_chol"},
      .cost = [](const kernels::Problem& p) {
        const double d = double(p.dim("d"));  // Cholesky d³/3, inverse from the factor 2d³/3, Cholesky d³/3
        return kernels::Cost{.bytes = 8.0 * d * d, .flops = 4.0 / 3.0 * d * d * d};
      }});
  static const bool registered = [] {
    family.add(detail::inverse_factor_reference_variant());
    family.add(detail::inverse_factor_chol_inv_chol_variant());
    return true;
  }();
  (void)registered;
  return family;
}

kernels::Family<ObsSweep>& obs_sweep_family() {
  static kernels::Family<ObsSweep> family({
      .name = "obs_sweep",
      .summary = "SparseGPT's in-block OBS sweep over B columns of W (rows independent; N:M chosen in the sweep)",
      .reference = "reference",
      .fused_order = {"fused", "reference"},
      .unfused_order = {"unfused"},
      .cost = [](const kernels::Problem& p) {
        const double rows = double(p.dim("rows")), B = double(p.dim("B"));
        // W1 read and written, keep1, Err1 written, U1's triangle, loss_rows; 2 flops per update of a later column.
        return kernels::Cost{.bytes = rows * B * (4 + 4 + 1 + 4) + 2.0 * B * (B + 1) + 8.0 * rows,
                             .flops = rows * B * (B - 1)};
      }});
  static const bool registered = [] {
    family.add(detail::obs_sweep_reference_variant());
    family.add(detail::obs_sweep_unfused_variant());
#if PT_CUDA
    family.add(detail::obs_sweep_fused_variant());
    family.add(detail::obs_sweep_two_rows_variant());
#endif
    return true;
  }();
  (void)registered;
  return family;
}

kernels::Family<MaskSelect>& mask_family() {
  static kernels::Family<MaskSelect> family({
      .name = "mask",
      .summary = "prune exactly k of every group (lowest scores, forced positions first, ties by lower index)",
      .reference = "reference",
      .fused_order = {"fused", "reference"},
      .unfused_order = {"unfused"},
      .cost = [](const kernels::Problem& p) {  // scores, prev_keep and keep once each; comparisons, no FLOPs
        const double n = double(p.dim("rows")) * double(p.dim("cols"));
        return kernels::Cost{.bytes = n * (4 + 1 + 1), .flops = 0};
      }});
  static const bool registered = [] {
    family.add(detail::mask_reference_variant());
    family.add(detail::mask_unfused_variant());
#if PT_CUDA
    family.add(detail::mask_fused_variant());
#endif
    return true;
  }();
  (void)registered;
  return family;
}

}  // namespace pt::prune
