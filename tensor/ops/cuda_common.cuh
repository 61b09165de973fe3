// Device-side helpers shared by the CUDA op files: element loads/stores through float, strided
// indexing of up to kMaxDims dims, and dtype dispatch to device types (__half, __nv_bfloat16).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/cuda_context.h"
#include "tensor/cuda/launch.h"
#include "tensor/nvtx.h"
#include "tensor/tensor.h"

namespace pt::cuda {

constexpr int kMaxDims = 8;

// Value conversions: every element type to and from its accumulation type.
template <class T> struct AccType { using type = float; };
template <> struct AccType<double> { using type = double; };
template <class T> using acc_t = typename AccType<T>::type;

template <class T> __device__ __forceinline__ acc_t<T> load(const T* p) { return acc_t<T>(*p); }
template <> __device__ __forceinline__ float load(const __half* p) { return __half2float(*p); }
template <> __device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
template <class T, class V> __device__ __forceinline__ void store(T* p, V v) { *p = T(v); }
template <class V> __device__ __forceinline__ void store(__half* p, V v) { *p = __float2half_rn(float(v)); }
template <class V> __device__ __forceinline__ void store(__nv_bfloat16* p, V v) { *p = __float2bfloat16_rn(float(v)); }

// Maps a linear index over `sizes` (row-major) to an element offset with `strides`.
struct StridedIndex {
  int rank = 0;
  int64_t sizes[kMaxDims];
  int64_t strides[kMaxDims];
  __device__ __forceinline__ int64_t offset(int64_t linear) const {
    int64_t off = 0;
    for (int d = rank - 1; d >= 0; --d) {
      int64_t i = linear % sizes[d];
      linear /= sizes[d];
      off += i * strides[d];
    }
    return off;
  }
};
// Strides of t viewed with `shape` (t must already be expanded to it).
StridedIndex make_index(const Tensor& t, const char* op);

// Calls f.template operator()<T>() with the device type of a float dtype.
template <class F> void dispatch_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: f.template operator()<float>(); return;
    case DType::f64: f.template operator()<double>(); return;
    case DType::f16: f.template operator()<__half>(); return;
    case DType::bf16: f.template operator()<__nv_bfloat16>(); return;
    default: PT_FAIL(op, ": dtype ", dtype_name(t), " not supported on cuda (allowed: f32, f64, f16, bf16)");
  }
}
// Every dtype, with 16-bit floats as device types.
template <class F> void dispatch_all(DType t, F&& f) {
  switch (t) {
    case DType::f32: f.template operator()<float>(); return;
    case DType::f64: f.template operator()<double>(); return;
    case DType::f16: f.template operator()<__half>(); return;
    case DType::bf16: f.template operator()<__nv_bfloat16>(); return;
    case DType::i32: f.template operator()<int32_t>(); return;
    case DType::i64: f.template operator()<int64_t>(); return;
    case DType::u8: f.template operator()<uint8_t>(); return;
  }
}

// ---- block reductions (blockDim.x a multiple of 32; every thread gets the result) -------------------
struct SumOp {
  template <class A> __device__ A operator()(A a, A b) const { return a + b; }
};
struct MaxOp {
  template <class A> __device__ A operator()(A a, A b) const { return a > b ? a : b; }
};
template <class A, class Op> __device__ __forceinline__ A warp_reduce(A v, Op op) {
  for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
template <class A, class Op> __device__ A block_reduce(A v, Op op, A identity) {
  __shared__ A partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_reduce(v, op);
  __syncthreads();  // earlier readers of `partial` are done
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  return warp_reduce(lane < warps ? partial[lane] : identity, op);
}
template <class A> __device__ __forceinline__ A warp_sum(A v) { return warp_reduce(v, SumOp{}); }
template <class A> __device__ __forceinline__ A block_sum(A v) { return block_reduce(v, SumOp{}, A(0)); }

}  // namespace pt::cuda
