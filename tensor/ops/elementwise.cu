// Element-wise ops on CUDA. One kernel per (dtype, arity); the op is a runtime switch that is uniform
// across threads (cheap, and keeps compile time down). Broadcast operands use stride-0 indexing; the
// all-contiguous case skips index arithmetic.
#include "tensor/ops/cuda_common.cuh"
#include "tensor/ops/cuda_ops.h"
#include "tensor/random.h"

namespace pt::cuda {
namespace {

template <class A> __device__ __forceinline__ A apply_binary(A a, A b, BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return a + b;
    case BinaryOp::sub: return a - b;
    case BinaryOp::mul: return a * b;
    case BinaryOp::div: return a / b;
    case BinaryOp::maximum: return (a > b || ::isnan(a)) ? a : b;
    case BinaryOp::minimum: return (a < b || ::isnan(a)) ? a : b;
  }
  return a;
}

template <class A> __device__ __forceinline__ A apply_unary(A x, UnaryOp op, A s) {
  switch (op) {
    case UnaryOp::neg: return -x;
    case UnaryOp::relu: return x > A(0) ? x : A(0);
    case UnaryOp::exp: return ::exp(x);
    case UnaryOp::log: return ::log(x);
    case UnaryOp::sqrt: return ::sqrt(x);
    case UnaryOp::rsqrt: return A(1) / ::sqrt(x);
    case UnaryOp::abs: return ::fabs(x);
    case UnaryOp::square: return x * x;
    case UnaryOp::add_scalar: return x + s;
    case UnaryOp::mul_scalar: return x * s;
    case UnaryOp::pow_scalar: return ::pow(x, s);
  }
  return x;
}

template <class A> __device__ __forceinline__ bool apply_compare(A a, A b, CompareOp op) {
  switch (op) {
    case CompareOp::eq: return a == b;
    case CompareOp::ne: return a != b;
    case CompareOp::lt: return a < b;
    case CompareOp::le: return a <= b;
    case CompareOp::gt: return a > b;
    case CompareOp::ge: return a >= b;
  }
  return false;
}

// Operand offsets for element i: contiguous fast path or strided.
struct Operands3 {
  StridedIndex o, a, b;
  bool contiguous;
};

template <class T>
__global__ void binary_kernel(T* out, const T* a, const T* b, Operands3 ix, int64_t n, BinaryOp op) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t io = i, ia = i, ib = i;
    if (!ix.contiguous) { io = ix.o.offset(i); ia = ix.a.offset(i); ib = ix.b.offset(i); }
    store(out + io, apply_binary(load(a + ia), load(b + ib), op));
  }
}

template <class T>
__global__ void unary_kernel(T* out, const T* x, Operands3 ix, int64_t n, UnaryOp op, double s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t io = i, ia = i;
    if (!ix.contiguous) { io = ix.o.offset(i); ia = ix.a.offset(i); }
    store(out + io, apply_unary(load(x + ia), op, acc_t<T>(s)));
  }
}

template <class T>
__global__ void relu_backward_kernel(T* out, const T* g, const T* x, Operands3 ix, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t io = i, ig = i, ixx = i;
    if (!ix.contiguous) { io = ix.o.offset(i); ig = ix.a.offset(i); ixx = ix.b.offset(i); }
    store(out + io, load(x + ixx) > 0 ? load(g + ig) : acc_t<T>(0));
  }
}

template <class T> __device__ __forceinline__ double as_double(const T* p) {
  if constexpr (std::is_integral_v<T>) return double(*p);
  else return double(load(p));
}

template <class T>
__global__ void compare_kernel(uint8_t* out, const T* a, const T* b, Operands3 ix, int64_t n, CompareOp op,
                               bool scalar, double s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t io = i, ia = i, ib = i;
    if (!ix.contiguous) { io = ix.o.offset(i); ia = ix.a.offset(i); ib = ix.b.offset(i); }
    double bv = scalar ? s : as_double(b + ib);
    out[io] = apply_compare(as_double(a + ia), bv, op) ? 1 : 0;
  }
}

template <class T>
__global__ void where_kernel(T* out, const uint8_t* c, const T* a, const T* b, StridedIndex ic, StridedIndex ia,
                             StridedIndex ib, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = c[ic.offset(i)] ? a[ia.offset(i)] : b[ib.offset(i)];
}

template <class T>
__global__ void dropout_mask_kernel(T* out, int64_t n, double p, double scale, uint64_t seed, uint64_t offset) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    store(out + i, random_uniform01(seed, offset + uint64_t(i)) >= p ? scale : 0.0);
}

Operands3 make_operands(const Tensor& out, const Tensor& a, const Tensor& b, const char* op) {
  Operands3 ix;
  ix.contiguous = out.is_contiguous() && a.is_contiguous() && b.is_contiguous() && a.shape() == out.shape() &&
                  b.shape() == out.shape();
  if (!ix.contiguous) {
    ix.o = make_index(out, op);
    ix.a = make_index(a.expand(out.shape()), op);
    ix.b = make_index(b.expand(out.shape()), op);
  }
  return ix;
}

}  // namespace
}  // namespace pt::cuda

namespace pt::cuda_ops {
using namespace pt::cuda;

void binary(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op) {
  int64_t n = out.numel();
  if (n == 0) return;
  Operands3 ix = make_operands(out, a, b, "binary");
  dispatch_float(out.dtype(), "binary", [&]<class T>() {
    binary_kernel<T><<<grid_for(n), kThreads, 0, current_stream()>>>(
        static_cast<T*>(out.data_ptr()), static_cast<const T*>(a.data_ptr()), static_cast<const T*>(b.data_ptr()), ix,
        n, op);
  });
  PT_CUDA_CHECK_LAUNCH();
}

void unary(const Tensor& out, const Tensor& x, UnaryOp op, double scalar) {
  int64_t n = out.numel();
  if (n == 0) return;
  Operands3 ix = make_operands(out, x, x, "unary");
  dispatch_float(out.dtype(), "unary", [&]<class T>() {
    unary_kernel<T><<<grid_for(n), kThreads, 0, current_stream()>>>(static_cast<T*>(out.data_ptr()),
                                                                    static_cast<const T*>(x.data_ptr()), ix, n, op,
                                                                    scalar);
  });
  PT_CUDA_CHECK_LAUNCH();
}

void relu_backward(const Tensor& out, const Tensor& grad_out, const Tensor& x) {
  int64_t n = out.numel();
  if (n == 0) return;
  Operands3 ix = make_operands(out, grad_out, x, "relu_backward");
  dispatch_float(out.dtype(), "relu_backward", [&]<class T>() {
    relu_backward_kernel<T><<<grid_for(n), kThreads, 0, current_stream()>>>(
        static_cast<T*>(out.data_ptr()), static_cast<const T*>(grad_out.data_ptr()),
        static_cast<const T*>(x.data_ptr()), ix, n);
  });
  PT_CUDA_CHECK_LAUNCH();
}

static void launch_compare(const Tensor& out, const Tensor& a, const Tensor& b, CompareOp op, bool scalar, double s) {
  int64_t n = out.numel();
  if (n == 0) return;
  Operands3 ix = make_operands(out, a, b, "compare");
  dispatch_all(a.dtype(), [&]<class T>() {
    compare_kernel<T><<<grid_for(n), kThreads, 0, current_stream()>>>(
        static_cast<uint8_t*>(out.data_ptr()), static_cast<const T*>(a.data_ptr()), static_cast<const T*>(b.data_ptr()),
        ix, n, op, scalar, s);
  });
  PT_CUDA_CHECK_LAUNCH();
}

void compare(const Tensor& out, const Tensor& a, const Tensor& b, CompareOp op) {
  launch_compare(out, a, b, op, false, 0.0);
}
void compare_scalar(const Tensor& out, const Tensor& a, double s, CompareOp op) {
  launch_compare(out, a, a, op, true, s);
}

void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  int64_t n = out.numel();
  if (n == 0) return;
  StridedIndex ic = make_index(cond.expand(out.shape()), "where");
  StridedIndex ia = make_index(a.expand(out.shape()), "where");
  StridedIndex ib = make_index(b.expand(out.shape()), "where");
  dispatch_all(out.dtype(), [&]<class T>() {
    where_kernel<T><<<grid_for(n), kThreads, 0, current_stream()>>>(
        static_cast<T*>(out.data_ptr()), static_cast<const uint8_t*>(cond.data_ptr()),
        static_cast<const T*>(a.data_ptr()), static_cast<const T*>(b.data_ptr()), ic, ia, ib, n);
  });
  PT_CUDA_CHECK_LAUNCH();
}

void dropout_mask(const Tensor& out, double p, uint64_t seed, uint64_t offset) {
  int64_t n = out.numel();
  if (n == 0) return;
  dispatch_float(out.dtype(), "dropout_mask", [&]<class T>() {
    dropout_mask_kernel<T><<<grid_for(n), kThreads, 0, current_stream()>>>(static_cast<T*>(out.data_ptr()), n, p,
                                                                           1.0 / (1.0 - p), seed, offset);
  });
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace pt::cuda_ops
