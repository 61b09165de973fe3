// The CPU side of the fused AdamW step: one multi-threaded pass over every parameter, vectorised (AVX2 + FMA when
// the CPU has them, chosen at run time), masked or not. It computes the CUDA kernel's function (nn/adamw.cu)
// element for element: f32 arithmetic with torch's rounding points (the decayed p and v·beta2 rounded as torch
// stores them, lerp and addcmul as fused multiply-adds), so the CPU and the GPU agree bit for bit and both stay
// within 1e-6 of the double-precision reference and of torch. f32 lanes keep the loop bound by memory (28-29 bytes
// per element), as torch's fused CPU step is.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "nn/adamw.h"

namespace pt::nn::detail {

// The optimizer's scalars in f32, as the CUDA kernel takes them.
struct AdamWCpuHyper {
  float beta2, one_minus_beta1, one_minus_beta2, eps;
  AdamWCpuHyper(double b1, double b2, double e)
      : beta2(float(b2)), one_minus_beta1(float(1.0 - b1)), one_minus_beta2(float(1.0 - b2)), eps(float(e)) {}
};

// One kept element; the same operations as adamw_element in adamw.cu (std::fma is the correctly rounded fmaf).
inline void adamw_f32_element(float& p, float g, float& m, float& v, const AdamWCpuHyper& h,
                              const AdamWFusedTensor& t) {
  p = p * t.decay;                                           // p.mul_(1 - lr*wd)
  m = std::fma(h.one_minus_beta1, g - m, m);                 // m.lerp_(g, 1 - beta1)
  v = std::fma(h.one_minus_beta2, g * g, v * h.beta2);       // v.mul_(beta2).addcmul_(g, g, 1 - beta2)
  const float denom = std::sqrt(v) / t.bc2_sqrt + h.eps;
  p = std::fma(-t.step_size, m / denom, p);                  // p.addcdiv_(m, denom, -lr/bc1)
}

// Every tensor in one parallel loop over fixed-size chunks; `vectorized` is ignored (any alignment works).
// simd = false runs the scalar loop only (tests compare the two bit for bit).
void adamw_cpu_step(const std::vector<AdamWFusedTensor>& tensors, const AdamWCpuHyper& h, bool simd = true);

}  // namespace pt::nn::detail
