// Copies, fills and random draws on CUDA (the CPU side lives in tensor/tensor.cpp).
#include <cmath>

#include "tensor/ops/cuda_common.cuh"
#include "tensor/ops/cuda_ops.h"
#include "tensor/random.h"

namespace pt::cuda {

StridedIndex make_index(const Tensor& t, const char* op) {
  PT_CHECK(t.dim() <= kMaxDims, op, ": tensors of rank > ", kMaxDims, " are not supported on cuda (", t.describe(), ")");
  StridedIndex ix;
  ix.rank = int(t.dim());
  for (int d = 0; d < ix.rank; ++d) {
    ix.sizes[d] = t.shape()[d];
    ix.strides[d] = t.strides()[d];
  }
  return ix;
}

namespace {

// Same dtype, any strides: move elements of `bytes` width.
template <class W>
__global__ void strided_copy_kernel(W* dst, StridedIndex di, const W* src, StridedIndex si, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[di.offset(i)] = src[si.offset(i)];
}

// Dtype conversion between contiguous buffers.
template <class D, class S>
__global__ void convert_kernel(D* dst, const S* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (std::is_integral_v<D> && std::is_integral_v<S>) dst[i] = D(src[i]);
    else store(dst + i, load(src + i));
  }
}

template <class T>
__global__ void fill_kernel(T* dst, StridedIndex di, T value, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[di.offset(i)] = value;
}

template <class T>
__global__ void arange_kernel(T* dst, int64_t start, int64_t step, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    store(dst + i, double(start + i * step));
}

// Same formulas as Tensor::uniform / Tensor::normal on the CPU, so both devices draw the same values.
template <class T>
__global__ void uniform_kernel(T* dst, int64_t n, double lo, double hi, uint64_t seed, uint64_t offset) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    store(dst + i, lo + (hi - lo) * random_uniform01(seed, offset + uint64_t(i)));
}
template <class T>
__global__ void normal_kernel(T* dst, int64_t n, double mean, double std, uint64_t seed, uint64_t offset) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t c = offset + 2 * uint64_t(i);
    double u1 = 1.0 - random_uniform01(seed, c);
    double u2 = random_uniform01(seed, c + 1);
    store(dst + i, mean + std * ::sqrt(-2.0 * ::log(u1)) * ::cos(6.283185307179586 * u2));
  }
}

template <class T> T host_value(double v) { return T(v); }
template <> __half host_value<__half>(double v) { return __float2half_rn(float(v)); }
template <> __nv_bfloat16 host_value<__nv_bfloat16>(double v) { return __float2bfloat16_rn(float(v)); }
template <> uint8_t host_value<uint8_t>(double v) { return uint8_t(int64_t(v)); }

void same_dtype_copy(const Tensor& dst, const Tensor& src) {
  int64_t n = dst.numel();
  cudaStream_t s = current_stream();
  if (dst.is_contiguous() && src.is_contiguous() && src.shape() == dst.shape()) {
    PT_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(), cudaMemcpyDeviceToDevice, s));
    return;
  }
  StridedIndex di = make_index(dst, "copy"), si = make_index(src, "copy");
  auto launch = [&]<class W>() {
    strided_copy_kernel<W><<<grid_for(n), kThreads, 0, s>>>(static_cast<W*>(dst.data_ptr()), di,
                                                            static_cast<const W*>(src.data_ptr()), si, n);
  };
  switch (dtype_size(dst.dtype())) {
    case 1: launch.operator()<uint8_t>(); break;
    case 2: launch.operator()<uint16_t>(); break;
    case 4: launch.operator()<uint32_t>(); break;
    default: launch.operator()<uint64_t>(); break;
  }
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace
}  // namespace pt::cuda

namespace pt::cuda_ops {
using namespace pt::cuda;

void copy(const Tensor& dst, const Tensor& src) {
  PT_NVTX_FUNC();
  if (dst.numel() == 0) return;
  if (dst.dtype() == src.dtype()) return same_dtype_copy(dst, src);
  // Convert contiguous-to-contiguous; strided cases go through a same-dtype staging copy.
  Tensor s = src.contiguous();
  Tensor d = dst.is_contiguous() ? dst : Tensor::empty(dst.shape(), dst.dtype(), Device::cuda);
  int64_t n = dst.numel();
  dispatch_all(d.dtype(), [&]<class D>() {
    dispatch_all(s.dtype(), [&]<class S>() {
      convert_kernel<D, S><<<grid_for(n), kThreads, 0, current_stream()>>>(static_cast<D*>(d.data_ptr()),
                                                                           static_cast<const S*>(s.data_ptr()), n);
    });
  });
  PT_CUDA_CHECK_LAUNCH();
  if (!dst.is_contiguous()) same_dtype_copy(dst, d);
}

void fill(const Tensor& t, double value) {
  int64_t n = t.numel();
  if (n == 0) return;
  StridedIndex ix = make_index(t, "fill");
  dispatch_all(t.dtype(), [&]<class T>() {
    fill_kernel<T><<<grid_for(n), kThreads, 0, current_stream()>>>(static_cast<T*>(t.data_ptr()), ix,
                                                                   host_value<T>(value), n);
  });
  PT_CUDA_CHECK_LAUNCH();
}

void arange(const Tensor& out, int64_t start, int64_t step) {
  int64_t n = out.numel();
  if (n == 0) return;
  dispatch_all(out.dtype(), [&]<class T>() {
    arange_kernel<T><<<grid_for(n), kThreads, 0, current_stream()>>>(static_cast<T*>(out.data_ptr()), start, step, n);
  });
  PT_CUDA_CHECK_LAUNCH();
}

void uniform(const Tensor& out, double lo, double hi, uint64_t seed, uint64_t offset) {
  int64_t n = out.numel();
  if (n == 0) return;
  dispatch_float(out.dtype(), "uniform", [&]<class T>() {
    uniform_kernel<T><<<grid_for(n), kThreads, 0, current_stream()>>>(static_cast<T*>(out.data_ptr()), n, lo, hi,
                                                                      seed, offset);
  });
  PT_CUDA_CHECK_LAUNCH();
}

void normal(const Tensor& out, double mean, double std, uint64_t seed, uint64_t offset) {
  int64_t n = out.numel();
  if (n == 0) return;
  dispatch_float(out.dtype(), "normal", [&]<class T>() {
    normal_kernel<T><<<grid_for(n), kThreads, 0, current_stream()>>>(static_cast<T*>(out.data_ptr()), n, mean, std,
                                                                     seed, offset);
  });
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace pt::cuda_ops
