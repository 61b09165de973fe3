// The kernel family of nn/ (tensor/kernel_registry.h): the masked AdamW step, and the list of its variants (each
// defined in its own file or beside the optimizer, registered here with one line).
#include "nn/adamw.h"

namespace pt::nn {

namespace detail {
kernels::Family<AdamWStep>::Variant adamw_reference_variant();  // adamw.cpp
kernels::Family<AdamWStep>::Variant adamw_unfused_variant();    // adamw.cpp
kernels::Family<AdamWStep>::Variant adamw_fused_variant();      // adamw.cpp (CPU loop: adamw_cpu.cpp, CUDA: adamw.cu)
}  // namespace detail

kernels::Family<AdamWStep>& adamw_family() {
  static kernels::Family<AdamWStep> family({
      .name = "adamw",
      .summary = "one masked AdamW step (torch's update; pruned p, m, v exactly 0) over a list of f32 parameters",
      .reference = "reference",
      .fused_order = {"fused"},
      .unfused_order = {"unfused"},
      .cost = [](const kernels::Problem& p) {
        // p, m, v read and written, g read (28 bytes), the mask byte when masked; ~12 flops an element.
        const double n = double(p.dim("n"));
        return kernels::Cost{.bytes = n * (p.pattern == "masked" ? 29.0 : 28.0), .flops = 12.0 * n};
      }});
  static const bool registered = [] {
    family.add(detail::adamw_reference_variant());
    family.add(detail::adamw_unfused_variant());
    family.add(detail::adamw_fused_variant());
    return true;
  }();
  (void)registered;
  return family;
}

}  // namespace pt::nn
