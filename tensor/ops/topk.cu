// CUDA top-k and k-th value with CUB radix sorts. topk gets x contiguous with the sorted dim last
// (topk.cpp permutes): one row is a plain DeviceRadixSort (a segmented sort would give a huge row to
// one thread block), several rows a DeviceSegmentedRadixSort; both are stable, so ties keep index
// order like the CPU path. Float radix order puts positive NaN above +inf, also like the CPU path.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/cuda_context.h"
#include "tensor/cuda/launch.h"
#include "tensor/ops/cuda_ops.h"

namespace pt::cuda_ops {
namespace {

using pt::cuda::grid_for;
using pt::cuda::kThreads;

// Scratch memory from the caching allocator (released when the tensor goes).
Tensor scratch_bytes(size_t n) { return Tensor::empty({int64_t(n > 0 ? n : 1)}, DType::u8, Device::cuda); }

__global__ void index_in_row(int64_t* idx, int64_t n, int64_t total) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    idx[i] = i % n;
}

__global__ void row_offsets(int* off, int rows, int n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i <= rows; i += int64_t(gridDim.x) * blockDim.x)
    off[i] = int(i) * n;
}

// values/indices [rows, k] <- the first k entries of each sorted row of length n.
template <class T>
__global__ void take_leading(const T* keys, const int64_t* idx, T* values, int64_t* indices, int64_t n, int64_t k,
                             int64_t total) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t src = (i / k) * n + i % k;
    values[i] = keys[src];
    indices[i] = idx[src];
  }
}

template <class T>
TopKOut topk_typed(const Tensor& x, int64_t k, bool largest) {
  const int64_t n = x.size(-1), total = x.numel(), rows = total / n;
  PT_CHECK(total <= INT_MAX, "topk: ", x.describe(), " has more than 2^31 elements, which CUB's sort here cannot take");
  cudaStream_t stream = pt::cuda::current_stream();
  Tensor keys_out = Tensor::empty(x.shape(), x.dtype(), Device::cuda);
  Tensor idx_in = Tensor::empty(x.shape(), DType::i64, Device::cuda);
  Tensor idx_out = Tensor::empty(x.shape(), DType::i64, Device::cuda);
  index_in_row<<<grid_for(total), kThreads, 0, stream>>>(idx_in.data<int64_t>(), n, total);
  PT_CUDA_CHECK_LAUNCH();

  const T* kin = static_cast<const T*>(x.data_ptr());
  T* kout = static_cast<T*>(keys_out.data_ptr());
  const int64_t* vin = idx_in.data<int64_t>();
  int64_t* vout = idx_out.data<int64_t>();
  constexpr int bits = int(sizeof(T) * 8);
  size_t bytes = 0;
  if (rows == 1) {
    auto sort = [&](void* tmp) {
      return largest ? cub::DeviceRadixSort::SortPairsDescending(tmp, bytes, kin, kout, vin, vout, total, 0, bits, stream)
                     : cub::DeviceRadixSort::SortPairs(tmp, bytes, kin, kout, vin, vout, total, 0, bits, stream);
    };
    PT_CUDA_CHECK(sort(nullptr));
    Tensor tmp = scratch_bytes(bytes);
    PT_CUDA_CHECK(sort(tmp.data_ptr()));
  } else {
    Tensor offsets = Tensor::empty({rows + 1}, DType::i32, Device::cuda);
    int* off = offsets.data<int32_t>();
    row_offsets<<<grid_for(rows + 1), kThreads, 0, stream>>>(off, int(rows), int(n));
    PT_CUDA_CHECK_LAUNCH();
    auto sort = [&](void* tmp) {
      return largest ? cub::DeviceSegmentedRadixSort::SortPairsDescending(tmp, bytes, kin, kout, vin, vout, int(total),
                                                                           int(rows), off, off + 1, 0, bits, stream)
                     : cub::DeviceSegmentedRadixSort::SortPairs(tmp, bytes, kin, kout, vin, vout, int(total),
                                                                int(rows), off, off + 1, 0, bits, stream);
    };
    PT_CUDA_CHECK(sort(nullptr));
    Tensor tmp = scratch_bytes(bytes);
    PT_CUDA_CHECK(sort(tmp.data_ptr()));
  }

  Shape out_shape = x.shape();
  out_shape.back() = k;
  TopKOut out{Tensor::empty(out_shape, x.dtype(), Device::cuda), Tensor::empty(out_shape, DType::i64, Device::cuda)};
  take_leading<<<grid_for(rows * k), kThreads, 0, stream>>>(
      kout, vout, static_cast<T*>(out.values.data_ptr()), out.indices.data<int64_t>(), n, k, rows * k);
  PT_CUDA_CHECK_LAUNCH();
  return out;
}

template <class T>
Tensor kth_typed(const Tensor& x, int64_t k) {
  cudaStream_t stream = pt::cuda::current_stream();
  const int64_t n = x.numel();
  Tensor sorted = Tensor::empty({n}, x.dtype(), Device::cuda);
  const T* in = static_cast<const T*>(x.data_ptr());
  T* out = static_cast<T*>(sorted.data_ptr());
  size_t bytes = 0;
  PT_CUDA_CHECK(cub::DeviceRadixSort::SortKeys(nullptr, bytes, in, out, n, 0, int(sizeof(T) * 8), stream));
  Tensor tmp = scratch_bytes(bytes);
  PT_CUDA_CHECK(cub::DeviceRadixSort::SortKeys(tmp.data_ptr(), bytes, in, out, n, 0, int(sizeof(T) * 8), stream));
  Tensor result = Tensor::empty({}, x.dtype(), Device::cuda);
  PT_CUDA_CHECK(cudaMemcpyAsync(result.data_ptr(), out + (k - 1), sizeof(T), cudaMemcpyDeviceToDevice, stream));
  return result;
}

}  // namespace

TopKOut topk(const Tensor& x, int64_t k, int64_t dim, bool largest) {
  PT_CHECK(dim == x.dim() - 1 && x.is_contiguous(), "topk (cuda): expects a contiguous input sorted along its last dim");
  switch (x.dtype()) {
    case DType::f32: return topk_typed<float>(x, k, largest);
    case DType::f64: return topk_typed<double>(x, k, largest);
    case DType::f16: return topk_typed<__half>(x, k, largest);
    case DType::bf16: return topk_typed<__nv_bfloat16>(x, k, largest);
    default: PT_FAIL("topk: dtype ", dtype_name(x.dtype()), " not supported on cuda (allowed: f32, f64, f16, bf16)");
  }
}

Tensor kth_value_all(const Tensor& x, int64_t k) {
  switch (x.dtype()) {
    case DType::f32: return kth_typed<float>(x, k);
    case DType::f64: return kth_typed<double>(x, k);
    case DType::f16: return kth_typed<__half>(x, k);
    case DType::bf16: return kth_typed<__nv_bfloat16>(x, k);
    default:
      PT_FAIL("kth_value_all: dtype ", dtype_name(x.dtype()), " not supported on cuda (allowed: f32, f64, f16, bf16)");
  }
}

}  // namespace pt::cuda_ops
