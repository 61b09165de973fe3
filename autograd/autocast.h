// Autocast: mixed precision for matrix products, like torch.autocast(device_type="cuda", dtype=bfloat16).
//
// While an AutocastGuard is active (thread-local), autograd::linear and autograd::matmul with f32 inputs on
// CUDA cast their operands to the autocast dtype (bf16 or f16) with the differentiable autograd::to_dtype,
// multiply on tensor cores with fp32 accumulation, and cast the product back to f32. Everything else —
// layer norm, softmax, the loss — stays in f32, and because to_dtype's backward converts the gradient
// back to the input's dtype, the f32 master weights receive f32 gradients. CPU tensors are never cast:
// fp32 everywhere on the CPU.
#pragma once
#include "tensor/dtype.h"

namespace pt::autograd {

// The active autocast dtype, or DType::f32 when autocast is off.
DType autocast_dtype();
bool autocast_enabled();

class AutocastGuard {
 public:
  // dtype: bf16 or f16; enabled = false makes the guard a no-op (so callers need no branch).
  explicit AutocastGuard(DType dtype = DType::bf16, bool enabled = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  DType prev_;
};

}  // namespace pt::autograd
