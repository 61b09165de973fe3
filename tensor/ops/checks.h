// Argument checks shared by the public ops: each error names the op and what it was given.
#pragma once
#include <initializer_list>
#include <string>

#include "tensor/tensor.h"

namespace pt::checks {

void defined(const char* op, const Tensor& t, const char* arg);
void same_device(const char* op, std::initializer_list<const Tensor*> ts);
void same_dtype(const char* op, const Tensor& a, const Tensor& b);
void dtype_in(const char* op, const Tensor& t, std::initializer_list<DType> allowed);
// f32/f64 on the CPU; additionally f16/bf16 on CUDA.
void float_dtype(const char* op, const Tensor& t);
void rank(const char* op, const Tensor& t, int64_t r, const char* arg);

}  // namespace pt::checks

// Dispatch a CUDA call; in a CPU-only build a CUDA tensor cannot exist, so this is unreachable there.
#if PT_CUDA
#define PT_DISPATCH_CUDA(t, ...) \
  if ((t).is_cuda()) { __VA_ARGS__; }
#else
#define PT_DISPATCH_CUDA(t, ...) \
  if ((t).is_cuda()) { PT_FAIL("built without CUDA"); }
#endif
