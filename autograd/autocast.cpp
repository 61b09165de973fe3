#include "autograd/autocast.h"

#include "tensor/error.h"

namespace pt::autograd {
namespace {
thread_local DType g_autocast = DType::f32;  // f32 = off
}

DType autocast_dtype() { return g_autocast; }
bool autocast_enabled() { return g_autocast != DType::f32; }

AutocastGuard::AutocastGuard(DType dtype, bool enabled) : prev_(g_autocast) {
  if (!enabled) return;
  PT_CHECK(dtype == DType::bf16 || dtype == DType::f16, "AutocastGuard: dtype ", dtype_name(dtype),
           " is not allowed (bf16 or f16)");
  g_autocast = dtype;
}

AutocastGuard::~AutocastGuard() { g_autocast = prev_; }

}  // namespace pt::autograd
