// The CPU side of the fused AdamW step: one multi-threaded pass over every parameter, vectorised (AVX2 when the
// CPU has it, chosen at run time), masked or not. It computes exactly what the reference kernel computes, bit for
// bit: each of torch's in-place ops (_single_tensor_adamw) evaluated in double and rounded to f32 where torch
// stores a tensor. Double lanes keep that identity (and so every CPU training result) while the loop, which
// moves 28-29 bytes per element, stays bound by memory rather than arithmetic.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "nn/adamw.h"

namespace pt::nn::detail {

// The optimizer's scalars as the reference uses them: f32 values held in doubles.
struct AdamWCpuHyper {
  double one_minus_beta1, beta2, one_minus_beta2, eps;
  AdamWCpuHyper(double b1, double b2, double e)
      : one_minus_beta1(float(1.0 - b1)), beta2(float(b2)), one_minus_beta2(float(1.0 - b2)), eps(float(e)) {}
};

// One element (not pruned): decay, lerp of m, v = v*beta2 + (1-beta2)*g*g, p -= step_size * m/denom.
inline void adamw_reference_element(float& p, float g, float& m, float& v, const AdamWCpuHyper& h, double decay,
                                    double step_size, double bc2_sqrt) {
  const double gk = g;
  const float p1 = float(p * decay);                                        // p.mul_(1 - lr*wd)
  const float m1 = float(m + h.one_minus_beta1 * (gk - m));                 // m.lerp_(g, 1 - beta1)
  const float v1 = float(float(v * h.beta2) + h.one_minus_beta2 * gk * gk);  // v.mul_(b2).addcmul_(g, g, 1-b2)
  const double denom = std::sqrt(double(v1)) / bc2_sqrt + h.eps;
  p = float(p1 - step_size * (m1 / denom));                                 // p.addcdiv_(m, denom, -lr/bc1)
  m = m1;
  v = v1;
}

// Every tensor in one parallel loop over fixed-size chunks; `vectorized` is ignored (any alignment works).
void adamw_cpu_step(const std::vector<AdamWFusedTensor>& tensors, const AdamWCpuHyper& h);

}  // namespace pt::nn::detail
