// Softmax / log-softmax over the last dim on CUDA, and their backwards. One block per row: a block-wide
// max, then a block-wide sum of exp(x - max), then the write; the row is re-read from global memory
// (L1/L2 hits for rows this short) rather than staged in shared memory, so any row length works.
// Math in f32 (f64 for f64 input). The causal rule is softmax.cpp's: row r is query i = r % Tq and
// sees keys j <= i + (Tk - Tq); masked outputs are exactly 0, a query that sees nothing gets zeros.
#include <algorithm>

#include "tensor/ops/cuda_common.cuh"
#include "tensor/ops/cuda_ops.h"

namespace pt::cuda_ops {
namespace {

using namespace pt::cuda;


__device__ __forceinline__ float exp_acc(float v) { return expf(v); }
__device__ __forceinline__ double exp_acc(double v) { return ::exp(v); }
__device__ __forceinline__ float log_acc(float v) { return logf(v); }
__device__ __forceinline__ double log_acc(double v) { return ::log(v); }

// y = softmax(x) (or log_softmax when kLog) of each row of length n; tq > 0 turns on the causal mask.
template <class T, bool kLog>
__global__ void softmax_fwd_kernel(const T* x, T* y, int64_t rows, int64_t n, int64_t tq) {
  using A = acc_t<T>;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {  // uniform per block: syncs are safe
    const T* xr = x + r * n;
    T* yr = y + r * n;
    int64_t valid = n;
    if (tq > 0) valid = ::max(int64_t(0), ::min(n, r % tq + (n - tq) + 1));
    A m = -INFINITY;
    for (int64_t j = threadIdx.x; j < valid; j += blockDim.x) m = ::max(m, A(load(xr + j)));
    m = block_reduce(m, MaxOp{}, A(-INFINITY));
    A s = 0;
    for (int64_t j = threadIdx.x; j < valid; j += blockDim.x) s += exp_acc(A(load(xr + j)) - m);
    s = block_reduce(s, SumOp{}, A(0));
    if constexpr (kLog) {
      const A lse = m + log_acc(s);
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) store(yr + j, A(load(xr + j)) - lse);
    } else {
      const A inv = A(1) / s;
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
        store(yr + j, j < valid ? exp_acc(A(load(xr + j)) - m) * inv : A(0));
    }
  }
}

// softmax: dx = y * (g - sum(g*y)); log-softmax (kLog): dx = g - exp(y) * sum(g).
template <class T, bool kLog>
__global__ void softmax_bwd_kernel(const T* y, const T* g, T* dx, int64_t rows, int64_t n) {
  using A = acc_t<T>;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* yr = y + r * n;
    const T* gr = g + r * n;
    T* dr = dx + r * n;
    A acc = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
      acc += kLog ? A(load(gr + j)) : A(load(gr + j)) * A(load(yr + j));
    acc = block_reduce(acc, SumOp{}, A(0));
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const A yv = load(yr + j), gv = load(gr + j);
      store(dr + j, kLog ? gv - exp_acc(yv) * acc : yv * (gv - acc));
    }
  }
}

// Threads per row block: enough warps to cover the row, at most 512 (long vocab rows).
int row_threads(int64_t n) {
  const int64_t t = pt::cuda::ceil_div(n, 32) * 32;
  return int(std::clamp<int64_t>(t, 32, 512));
}

template <class T, bool kLog>
void launch_softmax_fwd(const T* x, T* y, int64_t rows, int64_t n, int64_t tq, cudaStream_t stream) {
  softmax_fwd_kernel<T, kLog><<<grid_for(rows, 1), row_threads(n), 0, stream>>>(x, y, rows, n, tq);
  PT_CUDA_CHECK_LAUNCH();
}

template <class T, bool kLog>
void launch_softmax_bwd(const T* y, const T* g, T* dx, int64_t rows, int64_t n, cudaStream_t stream) {
  softmax_bwd_kernel<T, kLog><<<grid_for(rows, 1), row_threads(n), 0, stream>>>(y, g, dx, rows, n);
  PT_CUDA_CHECK_LAUNCH();
}

template <bool kLog> Tensor forward(const Tensor& x, bool causal, const char* op) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), Device::cuda);
  if (x.numel() == 0) return y;
  const int64_t n = x.size(-1), rows = x.numel() / n;
  const int64_t tq = causal ? x.size(-2) : 0;
  pt::cuda::dispatch_float(x.dtype(), op, [&]<class T>() {
    launch_softmax_fwd<T, kLog>(static_cast<const T*>(x.data_ptr()), static_cast<T*>(y.data_ptr()), rows, n, tq,
                                pt::cuda::current_stream());
  });
  return y;
}

template <bool kLog> Tensor backward(const Tensor& y, const Tensor& g, const char* op) {
  Tensor dx = Tensor::empty(y.shape(), y.dtype(), Device::cuda);
  if (y.numel() == 0) return dx;
  const int64_t n = y.size(-1), rows = y.numel() / n;
  pt::cuda::dispatch_float(y.dtype(), op, [&]<class T>() {
    launch_softmax_bwd<T, kLog>(static_cast<const T*>(y.data_ptr()), static_cast<const T*>(g.data_ptr()),
                                static_cast<T*>(dx.data_ptr()), rows, n, pt::cuda::current_stream());
  });
  return dx;
}

}  // namespace

Tensor softmax(const Tensor& x, bool causal) {
  PT_NVTX_RANGE("tensor/softmax");
  return forward<false>(x, causal, "softmax");
}

Tensor log_softmax(const Tensor& x) {
  PT_NVTX_RANGE("tensor/log_softmax");
  return forward<true>(x, false, "log_softmax");
}

Tensor softmax_backward(const Tensor& y, const Tensor& grad_y) {
  PT_NVTX_RANGE("tensor/softmax_backward");
  return backward<false>(y, grad_y, "softmax_backward");
}

Tensor log_softmax_backward(const Tensor& y, const Tensor& grad_y) {
  PT_NVTX_RANGE("tensor/log_softmax_backward");
  return backward<true>(y, grad_y, "log_softmax_backward");
}

}  // namespace pt::cuda_ops
