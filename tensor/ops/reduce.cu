// Reductions on CUDA. reduce_dim sees x (contiguous) as [outer, n, inner] and reduces the middle axis.
// Its `kind`: 0 = sum, 1 = mean (sum / n; NaN when n == 0), 2 = max (NaN propagates; values only,
// argmax_dim gives the indices). Sums accumulate in f32 (f64 for f64 input).
//  - inner == 1 (rows): one block per (row, split) with a shuffle + shared-memory block reduction;
//  - inner > 1 (columns): one thread per (outer, split, inner) walking its column, so a warp reads
//    32 consecutive elements (coalesced).
// A long axis with few outputs is cut into `splits` chunks whose partial sums a second kernel adds in
// a fixed order: results are deterministic (no atomics), unlike an atomicAdd scheme.
#include <algorithm>
#include <cstdint>

#include "tensor/ops/cuda_common.cuh"
#include "tensor/ops/cuda_ops.h"

namespace pt::cuda_ops {
namespace {

using namespace pt::cuda;

constexpr int64_t kTargetThreads = 132 * 2048;  // enough to fill an H100 (132 SMs x 2048 threads)

// dst = v, or dst += v (sum_squares_accumulate adds into an existing accumulator).
template <class Out, class A> __device__ __forceinline__ void put(Out* dst, A v, bool accumulate) {
  if (accumulate) store(dst, A(load(dst)) + v);
  else store(dst, v);
}

template <class T, class A, bool kSquare> __device__ __forceinline__ A term(const T* p) {
  const A v = A(load(p));
  return kSquare ? v * v : v;
}

// Block b = (row o, split s) sums x[o, s*chunk .. min(n, (s+1)*chunk)) into dst[b].
template <class T, class A, class Out, bool kSquare>
__global__ void reduce_rows_fwd_kernel(const T* x, Out* dst, int64_t outer, int64_t n, int64_t splits,
                                       int64_t chunk, A scale, bool accumulate) {
  for (int64_t b = blockIdx.x; b < outer * splits; b += gridDim.x) {  // uniform per block: syncs are safe
    const int64_t o = b / splits, lo = (b % splits) * chunk, hi = ::min(n, lo + chunk);
    A acc = 0;
    for (int64_t k = lo + threadIdx.x; k < hi; k += blockDim.x) acc += term<T, A, kSquare>(x + o * n + k);
    acc = block_sum(acc);
    if (threadIdx.x == 0) put(dst + b, acc * scale, accumulate);
  }
}

// Thread t = (o, s, i) sums column i of x[o] over its chunk of the axis into dst[t] ([outer, splits, inner]).
template <class T, class A, class Out>
__global__ void reduce_cols_fwd_kernel(const T* x, Out* dst, int64_t outer, int64_t n, int64_t inner,
                                       int64_t splits, int64_t chunk, A scale) {
  const int64_t total = outer * splits * inner;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = t % inner, s = (t / inner) % splits, o = t / (inner * splits);
    const int64_t lo = s * chunk, hi = ::min(n, lo + chunk);
    const T* p = x + (o * n + lo) * inner + i;
    A acc = 0;
    for (int64_t k = lo; k < hi; ++k, p += inner) acc += A(load(p));
    put(dst + t, acc * scale, false);
  }
}

// dst[o, i] (op)= scale * sum_s partial[o, s, i], adding the splits in order.
template <class A, class Out>
__global__ void reduce_finish_fwd_kernel(const A* partial, Out* dst, int64_t outer, int64_t splits, int64_t inner,
                                         A scale, bool accumulate) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < outer * inner; t += int64_t(gridDim.x) * blockDim.x) {
    const A* p = partial + (t / inner) * splits * inner + t % inner;
    A acc = 0;
    for (int64_t s = 0; s < splits; ++s) acc += p[s * inner];
    put(dst + t, acc * scale, accumulate);
  }
}

// (vb, ib) replaces (va, ia) as the running argmax: NaN beats numbers, ties go to the lower index.
template <class A> __device__ __forceinline__ bool takes_over(A va, int64_t ia, A vb, int64_t ib) {
  const bool na = isnan(va), nb = isnan(vb);
  if (na || nb) return nb && (!na || ib < ia);
  return vb > va || (vb == va && ib < ia);
}

// One block per row of length n: values[o] / indices[o] (either may be null).
template <class T>
__global__ void argmax_rows_fwd_kernel(const T* x, T* values, int64_t* indices, int64_t outer, int64_t n) {
  using A = acc_t<T>;
  __shared__ A best_v[32];
  __shared__ int64_t best_i[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int64_t o = blockIdx.x; o < outer; o += gridDim.x) {
    A v = -INFINITY;
    int64_t idx = INT64_MAX;  // "no element yet": loses to any real element
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
      const A c = load(x + o * n + k);
      if (takes_over(v, idx, c, k)) { v = c; idx = k; }
    }
    for (int off = 16; off > 0; off >>= 1) {
      const A ov = __shfl_xor_sync(0xffffffffu, v, off);
      const int64_t oi = __shfl_xor_sync(0xffffffffu, idx, off);
      if (takes_over(v, idx, ov, oi)) { v = ov; idx = oi; }
    }
    __syncthreads();
    if (lane == 0) { best_v[warp] = v; best_i[warp] = idx; }
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 1; w < warps; ++w)
        if (takes_over(v, idx, best_v[w], best_i[w])) { v = best_v[w]; idx = best_i[w]; }
      if (values) store(values + o, v);
      if (indices) indices[o] = idx;
    }
  }
}

// One thread per (o, i) walking the column in order (the first maximum is kept).
template <class T>
__global__ void argmax_cols_fwd_kernel(const T* x, T* values, int64_t* indices, int64_t outer, int64_t n,
                                       int64_t inner) {
  using A = acc_t<T>;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < outer * inner; t += int64_t(gridDim.x) * blockDim.x) {
    const T* p = x + (t / inner) * n * inner + t % inner;
    A v = load(p);
    int64_t idx = 0;
    for (int64_t k = 1; k < n && !isnan(v); ++k) {
      const A c = load(p + k * inner);
      if (isnan(c) || c > v) { v = c; idx = k; }
    }
    if (values) store(values + t, v);
    if (indices) indices[t] = idx;
  }
}

int row_threads(int64_t chunk) {
  const int64_t t = pt::cuda::ceil_div(chunk, 32) * 32;  // no more warps than elements
  return int(t < 32 ? 32 : (t > 256 ? 256 : t));
}

// dst (op)= scale * sum (or sum of squares) over the middle axis; A is the accumulation type.
template <class T, class A, class Out, bool kSquare>
void launch_reduce_sum(const T* x, Out* dst, int64_t outer, int64_t n, int64_t inner, A scale, bool accumulate,
                       cudaStream_t stream) {
  int64_t splits = 1;
  if (inner == 1) {
    if (outer < 512) splits = std::min(pt::cuda::ceil_div(n, 8192), pt::cuda::ceil_div(1024, outer));
  } else {
    splits = std::min(pt::cuda::ceil_div(kTargetThreads, outer * inner), pt::cuda::ceil_div(n, 16));
  }
  if (splits < 1) splits = 1;
  const int64_t chunk = pt::cuda::ceil_div(n, splits);
  Tensor partial;  // [outer, splits, inner] in A when the axis is split
  A* pdst = nullptr;
  if (splits > 1) {
    partial = Tensor::empty({outer * splits * inner}, sizeof(A) == 8 ? DType::f64 : DType::f32, Device::cuda);
    pdst = static_cast<A*>(partial.data_ptr());
  }
  if (inner == 1) {
    const int threads = row_threads(chunk);
    const unsigned grid = grid_for(outer * splits, 1);
    if (splits > 1) reduce_rows_fwd_kernel<T, A, A, kSquare><<<grid, threads, 0, stream>>>(x, pdst, outer, n, splits, chunk, A(1), false);
    else reduce_rows_fwd_kernel<T, A, Out, kSquare><<<grid, threads, 0, stream>>>(x, dst, outer, n, 1, chunk, scale, accumulate);
    PT_CUDA_CHECK_LAUNCH();
  } else {
    const int64_t total = outer * splits * inner;
    if (splits > 1) reduce_cols_fwd_kernel<T, A, A><<<grid_for(total, 256), 256, 0, stream>>>(x, pdst, outer, n, inner, splits, chunk, A(1));
    else reduce_cols_fwd_kernel<T, A, Out><<<grid_for(total, 256), 256, 0, stream>>>(x, dst, outer, n, inner, 1, chunk, scale);
    PT_CUDA_CHECK_LAUNCH();
  }
  if (splits > 1) {
    reduce_finish_fwd_kernel<A, Out><<<grid_for(outer * inner, 256), 256, 0, stream>>>(pdst, dst, outer, splits, inner,
                                                                                        scale, accumulate);
    PT_CUDA_CHECK_LAUNCH();
  }
}

template <class T>
void launch_argmax(const T* x, T* values, int64_t* indices, int64_t outer, int64_t n, int64_t inner,
                   cudaStream_t stream) {
  if (inner == 1) {
    argmax_rows_fwd_kernel<T><<<grid_for(outer, 1), row_threads(n), 0, stream>>>(
        x, values, indices, outer, n);
  } else {
    argmax_cols_fwd_kernel<T><<<grid_for(outer * inner, 256), 256, 0, stream>>>(x, values, indices, outer, n, inner);
  }
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void reduce_dim(const Tensor& out, const Tensor& x, int64_t outer, int64_t n, int64_t inner, int kind) {
  PT_NVTX_RANGE("tensor/reduce_dim");
  if (out.numel() == 0) return;
  PT_CHECK(kind >= 0 && kind <= 2, "reduce_dim: unknown kind ", kind, " (0 = sum, 1 = mean, 2 = max)");
  PT_CHECK(kind != 2 || n > 0, "max: cannot reduce over an empty dim of ", x.describe());
  cudaStream_t stream = pt::cuda::current_stream();
  pt::cuda::dispatch_float(x.dtype(), "reduce_dim", [&]<class T>() {
    using A = acc_t<T>;
    const T* px = static_cast<const T*>(x.data_ptr());
    T* po = static_cast<T*>(out.data_ptr());
    if (kind == 2) return launch_argmax<T>(px, po, nullptr, outer, n, inner, stream);
    const A scale = kind == 1 ? (n > 0 ? A(1) / A(n) : A(NAN)) : A(1);
    launch_reduce_sum<T, A, T, false>(px, po, outer, n, inner, scale, false, stream);
  });
}

void argmax_dim(const Tensor& out, const Tensor& x, int64_t outer, int64_t n, int64_t inner) {
  PT_NVTX_RANGE("tensor/argmax_dim");
  if (out.numel() == 0) return;
  PT_CHECK(n > 0, "argmax: cannot reduce over an empty dim of ", x.describe());
  pt::cuda::dispatch_float(x.dtype(), "argmax", [&]<class T>() {
    launch_argmax<T>(static_cast<const T*>(x.data_ptr()), nullptr, out.data<int64_t>(), outer, n, inner,
                     pt::cuda::current_stream());
  });
}

void sum_all(const Tensor& out, const Tensor& x) { reduce_dim(out, x, 1, x.numel(), 1, 0); }

void sum_squares_accumulate(const Tensor& acc, const Tensor& x) {
  PT_NVTX_RANGE("tensor/sum_squares");
  if (x.numel() == 0) return;
  PT_CHECK(acc.dtype() == DType::f32 || acc.dtype() == DType::f64,
           "sum_squares_accumulate: accumulator must be f32 or f64, got ", acc.describe());
  cudaStream_t stream = pt::cuda::current_stream();
  pt::cuda::dispatch_float(x.dtype(), "global_norm", [&]<class T>() {
    const T* px = static_cast<const T*>(x.data_ptr());
    if (acc.dtype() == DType::f64)
      launch_reduce_sum<T, double, double, true>(px, acc.data<double>(), 1, x.numel(), 1, 1.0, true, stream);
    else
      launch_reduce_sum<T, float, float, true>(px, acc.data<float>(), 1, x.numel(), 1, 1.0f, true, stream);
  });
}

}  // namespace pt::cuda_ops
