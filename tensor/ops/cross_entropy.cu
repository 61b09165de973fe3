// Cross-entropy (fused log-softmax + NLL, ignore_index) on CUDA; the math is cross_entropy.cpp's.
//  - forward: one block per row computes lse (block max, then block sum of exp) and the row's loss;
//    a single-block kernel then adds the row losses and counts the kept rows in a fixed order
//    (deterministic, no atomics). An out-of-range target adds no loss; its first row is reported at the next
//    host synchronisation (tensor/cuda/device_checks.h), so the forward costs no host round trip.
//  - backward: one block per row writes scale * (softmax - onehot); scale is computed on the device
//    from grad_loss and count, so the backward never synchronises.
// Math in f32 (f64 for f64 logits).
#include <algorithm>
#include <climits>

#include "tensor/cuda/device_checks.h"
#include "tensor/ops/checks.h"
#include "tensor/ops/cuda_common.cuh"
#include "tensor/ops/cuda_ops.h"

namespace pt::cuda_ops {
namespace {

using namespace pt::cuda;

constexpr int kFinishThreads = 1024;

__device__ __forceinline__ float exp_acc(float v) { return expf(v); }
__device__ __forceinline__ double exp_acc(double v) { return ::exp(v); }
__device__ __forceinline__ float log_acc(float v) { return logf(v); }
__device__ __forceinline__ double log_acc(double v) { return ::log(v); }

// lse[r] and row_loss[r] (0 for ignored rows and for invalid targets, which are reported to `check`).
template <class T>
__global__ void cross_entropy_fwd_kernel(const T* x, const int64_t* targets, acc_t<T>* lse, acc_t<T>* row_loss,
                                         DeviceIndexCheck check, int64_t n, int64_t v, int64_t ignore_index) {
  using A = acc_t<T>;
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {  // uniform per block: syncs are safe
    const T* xr = x + r * v;
    A m = -INFINITY;
    for (int64_t j = threadIdx.x; j < v; j += blockDim.x) m = ::max(m, A(load(xr + j)));
    m = block_reduce(m, MaxOp{}, A(-INFINITY));
    A s = 0;
    for (int64_t j = threadIdx.x; j < v; j += blockDim.x) s += exp_acc(A(load(xr + j)) - m);
    s = block_reduce(s, SumOp{}, A(0));
    if (threadIdx.x == 0) {
      const A l = m + log_acc(s);
      const int64_t t = targets[r];
      lse[r] = l;
      A loss = 0;
      if (t != ignore_index) {
        if (t >= 0 && t < v) loss = l - A(load(xr + t));
        else report_bad_index(check, r);
      }
      row_loss[r] = loss;
    }
  }
}

// One block: loss = sum of row losses (/ count for mean, 0 when count == 0), count = kept rows.
template <class A>
__global__ void cross_entropy_finish_fwd_kernel(const A* row_loss, const int64_t* targets, A* loss, int64_t* count,
                                                int64_t n, int64_t ignore_index, bool mean) {
  A s = 0;
  unsigned long long c = 0;
  for (int64_t r = threadIdx.x; r < n; r += blockDim.x) {
    s += row_loss[r];
    c += targets[r] != ignore_index ? 1 : 0;
  }
  s = block_reduce(s, SumOp{}, A(0));
  c = block_reduce(c, SumOp{}, 0ull);
  if (threadIdx.x == 0) {
    *loss = mean ? (c > 0 ? s / A(c) : A(0)) : s;
    *count = int64_t(c);
  }
}

// dx[r, j] = scale * (exp(x[r, j] - lse[r]) - [j == t_r]); ignored rows get 0.
template <class T>
__global__ void cross_entropy_bwd_kernel(const T* x, const int64_t* targets, const acc_t<T>* lse,
                                         const acc_t<T>* grad_loss, const int64_t* count, T* dx, int64_t n, int64_t v,
                                         int64_t ignore_index, bool mean) {
  using A = acc_t<T>;
  const int64_t c = *count;
  const A scale = mean ? (c > 0 ? *grad_loss / A(c) : A(0)) : *grad_loss;
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const T* xr = x + r * v;
    T* dr = dx + r * v;
    const int64_t t = targets[r];
    const bool kept = t != ignore_index && t >= 0 && t < v;
    const A l = lse[r];
    for (int64_t j = threadIdx.x; j < v; j += blockDim.x)
      store(dr + j, kept ? scale * (exp_acc(A(load(xr + j)) - l) - (j == t ? A(1) : A(0))) : A(0));
  }
}

int row_threads(int64_t n) {
  const int64_t t = pt::cuda::ceil_div(n, 32) * 32;  // no more warps than elements
  return int(std::clamp<int64_t>(t, 32, 512));
}

DType stat_dtype(DType x) { return x == DType::f64 ? DType::f64 : DType::f32; }

}  // namespace

CrossEntropyOut cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index, Reduction r) {
  PT_NVTX_RANGE("tensor/cross_entropy");
  const int64_t n = logits.size(0), v = logits.size(1);
  const DType sd = stat_dtype(logits.dtype());
  CrossEntropyOut out{Tensor::empty({}, sd, Device::cuda), Tensor::empty({n}, sd, Device::cuda),
                      Tensor::empty({}, DType::i64, Device::cuda)};
  cudaStream_t stream = pt::cuda::current_stream();
  Tensor row_loss = Tensor::empty({n}, sd, Device::cuda);
  DeviceIndexCheck check{};
  if (n > 0)
    check = begin_index_check(n, [targets, v, ignore_index, what = logits.describe()](int64_t row) {
      const int64_t t = int64_t(targets.select(0, row).item());
      return checks::bad_target_message("cross_entropy", t, row, v, what, ignore_index) + " (checked on the device)";
    });
  pt::cuda::dispatch_float(logits.dtype(), "cross_entropy", [&]<class T>() {
    using A = acc_t<T>;
    const int64_t* pt_ = targets.data<int64_t>();
    if (n > 0) {
      cross_entropy_fwd_kernel<T><<<grid_for(n, 1), row_threads(v), 0, stream>>>(
          static_cast<const T*>(logits.data_ptr()), pt_, static_cast<A*>(out.lse.data_ptr()),
          static_cast<A*>(row_loss.data_ptr()), check, n, v, ignore_index);
      PT_CUDA_CHECK_LAUNCH();
    }
    cross_entropy_finish_fwd_kernel<A><<<1, kFinishThreads, 0, stream>>>(
        static_cast<const A*>(row_loss.data_ptr()), pt_, static_cast<A*>(out.loss.data_ptr()),
        out.count.data<int64_t>(), n, ignore_index, r == Reduction::mean);
    PT_CUDA_CHECK_LAUNCH();
  });
  return out;
}

Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, const CrossEntropyOut& fwd,
                              const Tensor& grad_loss, int64_t ignore_index, Reduction r) {
  PT_NVTX_RANGE("tensor/cross_entropy_backward");
  const int64_t n = logits.size(0), v = logits.size(1);
  Tensor dx = Tensor::empty(logits.shape(), logits.dtype(), Device::cuda);
  if (dx.numel() == 0) return dx;
  const Tensor g = grad_loss.to(stat_dtype(logits.dtype()));  // device-side conversion, no sync
  cudaStream_t stream = pt::cuda::current_stream();
  pt::cuda::dispatch_float(logits.dtype(), "cross_entropy_backward", [&]<class T>() {
    using A = acc_t<T>;
    cross_entropy_bwd_kernel<T><<<grid_for(n, 1), row_threads(v), 0, stream>>>(
        static_cast<const T*>(logits.data_ptr()), targets.data<int64_t>(), static_cast<const A*>(fwd.lse.data_ptr()),
        static_cast<const A*>(g.data_ptr()), fwd.count.data<int64_t>(), static_cast<T*>(dx.data_ptr()), n, v,
        ignore_index, r == Reduction::mean);
    PT_CUDA_CHECK_LAUNCH();
  });
  return dx;
}

}  // namespace pt::cuda_ops
