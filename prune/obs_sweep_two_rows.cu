// The `two_rows` OBS-sweep variant: the fused kernel with a half-warp per row, so one warp sweeps two rows at
// once. Each lane keeps twice the weights in registers (CPL = ceil(B/16)) and every shuffle stays within the
// row's 16 lanes; U1's shared-memory triangle is read by twice as many rows per load. Registered in
// prune/kernel_families.cpp with one line.
#include "prune/obs_sweep_kernel.cuh"

namespace pt::prune::detail {

kernels::Family<ObsSweep>::Variant obs_sweep_two_rows_variant() {
  return {{.name = "two_rows",
           .devices = {Device::cuda},
           .dtypes = {DType::f32},
           .summary = "the fused kernel with a half-warp per row: two rows per warp",
           .supports = "B <= 256",
           .accepts = [](const kernels::Problem& p) { return p.dim("B") <= 256; }},
          [](const ObsSweepArgs& a) { obs_sweep_cuda::sweep<16>(a, "two_rows"); }};
}

}  // namespace pt::prune::detail
