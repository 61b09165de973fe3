// The `fused` OBS-sweep variant: one launch per block of B <= 256 columns, a warp per row
// (the kernel is in obs_sweep_kernel.cuh, shared with the two_rows variant).
#include "prune/obs_sweep_kernel.cuh"

namespace pt::prune::detail {

kernels::Family<ObsSweep>::Variant obs_sweep_fused_variant() {
  return {{.name = "fused",
           .devices = {Device::cuda},
           .dtypes = {DType::f32},
           .summary = "one kernel per block: U1 in shared memory, a warp per row, weights in registers",
           .supports = "B <= 256",
           .accepts = [](const kernels::Problem& p) { return p.dim("B") <= 256; }},
          [](const ObsSweepArgs& a) { obs_sweep_cuda::sweep<32>(a, "fused"); }};
}

}  // namespace pt::prune::detail
