// Layer norm over the last dim on CUDA. Math in f32 (f64 for f64 input); mean/rstd are saved in that
// accumulation type.
//  - forward: one block per row; mean, then the variance as a second pass over (x - mean) (no
//    cancellation), then the write.
//  - backward dx: one block per row, two block sums (mean of w*dy and of w*dy*xhat).
//  - backward dweight/dbias: column sums over rows. Thread (split s, column j) adds its chunk of rows
//    (a warp reads 32 consecutive columns: coalesced) into a partial buffer; a second kernel adds the
//    splits in order. Deterministic, no atomics.
#include <algorithm>

#include "tensor/ops/cuda_common.cuh"
#include "tensor/ops/cuda_ops.h"

namespace pt::cuda_ops {
namespace {

using namespace pt::cuda;

constexpr int64_t kTargetThreads = 132 * 2048;  // enough to fill an H100 (132 SMs x 2048 threads)

__device__ __forceinline__ float rsqrt_acc(float v) { return 1.0f / sqrtf(v); }
__device__ __forceinline__ double rsqrt_acc(double v) { return 1.0 / ::sqrt(v); }

template <class T>
__global__ void layer_norm_fwd_kernel(const T* x, const T* w, const T* b, T* y, acc_t<T>* mean, acc_t<T>* rstd,
                                      int64_t rows, int64_t c, double eps) {
  using A = acc_t<T>;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {  // uniform per block: syncs are safe
    const T* xr = x + r * c;
    T* yr = y + r * c;
    A s = 0;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) s += A(load(xr + j));
    const A m = block_sum(s) / A(c);
    A v = 0;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
      const A d = A(load(xr + j)) - m;
      v += d * d;
    }
    const A rs = rsqrt_acc(block_sum(v) / A(c) + A(eps));
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x)
      store(yr + j, (A(load(xr + j)) - m) * rs * A(load(w + j)) + A(load(b + j)));
    if (threadIdx.x == 0) {
      mean[r] = m;
      rstd[r] = rs;
    }
  }
}

// dx = rstd * (w*dy - mean(w*dy) - xhat * mean(w*dy*xhat)), one block per row.
template <class T>
__global__ void layer_norm_dx_bwd_kernel(const T* dy, const T* x, const T* w, const acc_t<T>* mean,
                                         const acc_t<T>* rstd, T* dx, int64_t rows, int64_t c) {
  using A = acc_t<T>;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* dyr = dy + r * c;
    const T* xr = x + r * c;
    T* dxr = dx + r * c;
    const A m = mean[r], rs = rstd[r];
    A a = 0, bs = 0;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
      const A wdy = A(load(dyr + j)) * A(load(w + j));
      a += wdy;
      bs += wdy * (A(load(xr + j)) - m) * rs;
    }
    a = block_sum(a) / A(c);
    bs = block_sum(bs) / A(c);
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
      const A xhat = (A(load(xr + j)) - m) * rs;
      store(dxr + j, rs * (A(load(dyr + j)) * A(load(w + j)) - a - xhat * bs));
    }
  }
}

// Thread t = (split s, column j): partial_w[s, j] = sum dy*xhat, partial_b[s, j] = sum dy over its rows.
template <class T>
__global__ void layer_norm_dwdb_bwd_kernel(const T* dy, const T* x, const acc_t<T>* mean, const acc_t<T>* rstd,
                                           acc_t<T>* partial_w, acc_t<T>* partial_b, int64_t rows, int64_t c,
                                           int64_t splits, int64_t chunk) {
  using A = acc_t<T>;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < splits * c; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = t % c, lo = (t / c) * chunk, hi = ::min(rows, lo + chunk);
    A aw = 0, ab = 0;
    for (int64_t r = lo; r < hi; ++r) {
      const A g = load(dy + r * c + j);
      aw += g * (A(load(x + r * c + j)) - mean[r]) * rstd[r];
      ab += g;
    }
    partial_w[t] = aw;
    partial_b[t] = ab;
  }
}

// dweight[j] / dbias[j] = sums of the splits' partials, in split order.
template <class T>
__global__ void layer_norm_dwdb_finish_bwd_kernel(const acc_t<T>* partial_w, const acc_t<T>* partial_b, T* dw,
                                                  T* db, int64_t c, int64_t splits) {
  using A = acc_t<T>;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < c; j += int64_t(gridDim.x) * blockDim.x) {
    A aw = 0, ab = 0;
    for (int64_t s = 0; s < splits; ++s) {
      aw += partial_w[s * c + j];
      ab += partial_b[s * c + j];
    }
    store(dw + j, aw);
    store(db + j, ab);
  }
}

int row_threads(int64_t n) {
  const int64_t t = pt::cuda::ceil_div(n, 32) * 32;  // no more warps than elements
  return int(std::clamp<int64_t>(t, 32, 512));
}

template <class T>
void launch_layer_norm_fwd(const T* x, const T* w, const T* b, T* y, acc_t<T>* mean, acc_t<T>* rstd, int64_t rows,
                           int64_t c, double eps, cudaStream_t stream) {
  layer_norm_fwd_kernel<T><<<grid_for(rows, 1), row_threads(c), 0, stream>>>(x, w, b, y, mean, rstd,
                                                                                             rows, c, eps);
  PT_CUDA_CHECK_LAUNCH();
}

template <class T>
void launch_layer_norm_bwd(const T* dy, const T* x, const T* w, const acc_t<T>* mean, const acc_t<T>* rstd, T* dx,
                           T* dw, T* db, int64_t rows, int64_t c, cudaStream_t stream) {
  using A = acc_t<T>;
  if (rows > 0) {
    layer_norm_dx_bwd_kernel<T><<<grid_for(rows, 1), row_threads(c), 0, stream>>>(dy, x, w, mean,
                                                                                                  rstd, dx, rows, c);
    PT_CUDA_CHECK_LAUNCH();
  }
  // Enough (split, column) threads to fill the GPU, but at least 16 rows per split.
  const int64_t splits = std::clamp<int64_t>(std::min(pt::cuda::ceil_div(kTargetThreads, c), pt::cuda::ceil_div(rows, 16)),
                                             1, kTargetThreads);
  const int64_t chunk = pt::cuda::ceil_div(rows, splits);
  Tensor partial = Tensor::empty({2, splits * c}, sizeof(A) == 8 ? DType::f64 : DType::f32, Device::cuda);
  A* pw = static_cast<A*>(partial.data_ptr());
  A* pb = pw + splits * c;
  layer_norm_dwdb_bwd_kernel<T><<<grid_for(splits * c, 256), 256, 0, stream>>>(dy, x, mean, rstd, pw, pb, rows, c,
                                                                               splits, chunk);
  PT_CUDA_CHECK_LAUNCH();
  layer_norm_dwdb_finish_bwd_kernel<T><<<grid_for(c, 256), 256, 0, stream>>>(pw, pb, dw, db, c, splits);
  PT_CUDA_CHECK_LAUNCH();
}

DType stat_dtype(DType x) { return x == DType::f64 ? DType::f64 : DType::f32; }

}  // namespace

LayerNormOut layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  PT_NVTX_RANGE("tensor/layer_norm");
  const int64_t c = x.size(-1), rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  LayerNormOut out{Tensor::empty(x.shape(), x.dtype(), Device::cuda),
                   Tensor::empty({rows}, stat_dtype(x.dtype()), Device::cuda),
                   Tensor::empty({rows}, stat_dtype(x.dtype()), Device::cuda)};
  if (rows == 0) return out;
  pt::cuda::dispatch_float(x.dtype(), "layer_norm", [&]<class T>() {
    using A = acc_t<T>;
    launch_layer_norm_fwd<T>(static_cast<const T*>(x.data_ptr()), static_cast<const T*>(weight.data_ptr()),
                             static_cast<const T*>(bias.data_ptr()), static_cast<T*>(out.y.data_ptr()),
                             static_cast<A*>(out.mean.data_ptr()), static_cast<A*>(out.rstd.data_ptr()), rows, c, eps,
                             pt::cuda::current_stream());
  });
  return out;
}

LayerNormGrads layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                   const Tensor& rstd) {
  PT_NVTX_RANGE("tensor/layer_norm_backward");
  const int64_t c = x.size(-1), rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  LayerNormGrads g{Tensor::empty(x.shape(), x.dtype(), Device::cuda), Tensor::empty({c}, x.dtype(), Device::cuda),
                   Tensor::empty({c}, x.dtype(), Device::cuda)};
  if (c == 0) return g;
  pt::cuda::dispatch_float(x.dtype(), "layer_norm_backward", [&]<class T>() {
    using A = acc_t<T>;
    launch_layer_norm_bwd<T>(static_cast<const T*>(dy.data_ptr()), static_cast<const T*>(x.data_ptr()),
                             static_cast<const T*>(weight.data_ptr()), static_cast<const A*>(mean.data_ptr()),
                             static_cast<const A*>(rstd.data_ptr()), static_cast<T*>(g.dx.data_ptr()),
                             static_cast<T*>(g.dweight.data_ptr()), static_cast<T*>(g.dbias.data_ptr()), rows, c,
                             pt::cuda::current_stream());
  });
  return g;
}

}  // namespace pt::cuda_ops
