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

// The messages of an index out of range, the same on both devices (CUDA finds them on the device and reports
// them at the next synchronisation: tensor/cuda/device_checks.h).
std::string bad_id_message(const char* op, int64_t id, int64_t position, const Tensor& ids, int64_t rows,
                           const std::string& table);
std::string bad_target_message(const char* op, int64_t target, int64_t row, int64_t classes,
                               const std::string& logits, int64_t ignore_index);

}  // namespace pt::checks

// Dispatch a CUDA call; in a CPU-only build a CUDA tensor cannot exist, so this is unreachable there.
#if PT_CUDA
#define PT_DISPATCH_CUDA(t, ...) \
  if ((t).is_cuda()) { __VA_ARGS__; }
#else
#define PT_DISPATCH_CUDA(t, ...) \
  if ((t).is_cuda()) { PT_FAIL("built without CUDA"); }
#endif
