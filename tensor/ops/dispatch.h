// Host-side dtype dispatch: call a templated lambda with the C++ type of a DType, and convert any
// element type to and from double (the CPU reference's working precision).
#pragma once
#include "tensor/dtype.h"
#include "tensor/error.h"

namespace pt {

template <class T> inline double to_f64(T v) { return double(v); }
template <> inline double to_f64(half_t v) { return f16_to_float(v.bits); }
template <> inline double to_f64(bfloat16_t v) { return bf16_to_float(v.bits); }
template <class T> inline T from_f64(double v) { return T(v); }
template <> inline half_t from_f64(double v) { return half_t{float_to_f16(float(v))}; }
template <> inline bfloat16_t from_f64(double v) { return bfloat16_t{float_to_bf16(float(v))}; }
template <> inline uint8_t from_f64(double v) { return uint8_t(int64_t(v)); }

// f(.template operator()<T>()) for every dtype.
template <class F> decltype(auto) dispatch_any(DType t, F&& f) {
  switch (t) {
    case DType::f32: return f.template operator()<float>();
    case DType::f64: return f.template operator()<double>();
    case DType::f16: return f.template operator()<half_t>();
    case DType::bf16: return f.template operator()<bfloat16_t>();
    case DType::i32: return f.template operator()<int32_t>();
    case DType::i64: return f.template operator()<int64_t>();
    case DType::u8: return f.template operator()<uint8_t>();
  }
  PT_FAIL("bad dtype");
}

// f32 / f64 only: the CPU compute dtypes.
template <class F> decltype(auto) dispatch_cpu_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f.template operator()<float>();
    case DType::f64: return f.template operator()<double>();
    default: PT_FAIL(op, ": dtype ", dtype_name(t), " not supported on cpu (allowed: f32, f64)");
  }
}

}  // namespace pt
