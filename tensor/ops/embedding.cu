// Embedding gather and backward scatter-add on CUDA.
//  - Ids are range-checked on the device first (the first bad position is found with an atomicMin and
//    read back), so an out-of-range id raises an error instead of reading or writing out of bounds.
//    That read-back synchronises the stream once per call.
//  - forward: one thread per output element (a warp copies 32 consecutive columns of one row).
//  - backward: deterministic, without float atomics: (id, position) pairs are radix-sorted (CUB, stable,
//    so positions stay ascending within an id); one block per run of equal ids sums those gradient
//    rows in position order, in f32 (f64 for f64) - the CPU reference's order.
#include <algorithm>
#include <climits>
#include <string>
#include <cub/device/device_radix_sort.cuh>

#include "tensor/ops/cuda_common.cuh"
#include "tensor/ops/cuda_ops.h"

namespace pt::cuda_ops {
namespace {

using namespace pt::cuda;

constexpr int64_t kMaxGrid = 65535 * 16;

unsigned grid_for(int64_t n, int threads) {
  return unsigned(std::clamp<int64_t>(pt::cuda::ceil_div(n, threads), 1, kMaxGrid));
}

// *first_bad = the smallest position whose id is outside [0, rows) (stays ULLONG_MAX when none is).
template <class I>
__global__ void embedding_check_fwd_kernel(const I* ids, int64_t n, int64_t rows, unsigned long long* first_bad) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t id = int64_t(ids[i]);
    if (id < 0 || id >= rows) atomicMin(first_bad, (unsigned long long)i);
  }
}

template <class T, class I>
__global__ void embedding_fwd_kernel(const T* w, const I* ids, T* out, int64_t n, int64_t c) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n * c; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = w[int64_t(ids[i / c]) * c + i % c];
}

// Sort input: key = id, value = position.
template <class I>
__global__ void embedding_keys_bwd_kernel(const I* ids, int* keys, int* positions, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    keys[i] = int(ids[i]);
    positions[i] = int(i);
  }
}

// Block b handles sorted entry b if it starts a run of equal ids: out[id] = sum of grad rows of the run.
template <class T>
__global__ void embedding_bwd_kernel(const T* grad, const int* keys, const int* positions, T* out, int64_t n,
                                     int64_t c, int64_t padding_idx) {
  using A = acc_t<T>;
  for (int64_t b = blockIdx.x; b < n; b += gridDim.x) {
    const int id = keys[b];
    if ((b > 0 && keys[b - 1] == id) || id == padding_idx) continue;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
      A acc = 0;
      for (int64_t k = b; k < n && keys[k] == id; ++k) acc += A(load(grad + int64_t(positions[k]) * c + j));
      store(out + int64_t(id) * c + j, acc);
    }
  }
}

template <class F> void dispatch_ids(DType t, F&& f) {
  if (t == DType::i32) f.template operator()<int32_t>();
  else f.template operator()<int64_t>();
}

// Raises "op: id X at flat position P of ids ... is out of range [0, rows) for <what>" if any id is bad.
void check_ids_in_range(const Tensor& ids, int64_t rows, const char* op, const std::string& what) {
  const int64_t n = ids.numel();
  if (n == 0) return;
  cudaStream_t stream = pt::cuda::current_stream();
  Tensor flag = Tensor::empty({1}, DType::i64, Device::cuda);
  PT_CUDA_CHECK(cudaMemsetAsync(flag.data_ptr(), 0xFF, sizeof(unsigned long long), stream));  // ULLONG_MAX
  auto* pflag = static_cast<unsigned long long*>(flag.data_ptr());
  dispatch_ids(ids.dtype(), [&]<class I>() {
    embedding_check_fwd_kernel<I><<<grid_for(n, 256), 256, 0, stream>>>(static_cast<const I*>(ids.data_ptr()), n, rows,
                                                                         pflag);
    PT_CUDA_CHECK_LAUNCH();
  });
  unsigned long long bad = 0;
  PT_CUDA_CHECK(cudaMemcpyAsync(&bad, pflag, sizeof(bad), cudaMemcpyDeviceToHost, stream));
  PT_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (bad == ULLONG_MAX) return;
  const int64_t id = int64_t(ids.reshape({-1}).select(0, int64_t(bad)).item());
  PT_FAIL(op, ": id ", id, " at flat position ", bad, " of ids ", ids.describe(), " is out of range [0, ", rows,
          ") for ", what);
}

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  PT_NVTX_RANGE("tensor/embedding");
  const int64_t rows = weight.size(0), c = weight.size(1), n = ids.numel();
  Shape out_shape = ids.shape();
  out_shape.push_back(c);
  Tensor out = Tensor::empty(out_shape, weight.dtype(), Device::cuda);
  check_ids_in_range(ids, rows, "embedding", "weight " + weight.describe());
  if (out.numel() == 0) return out;
  cudaStream_t stream = pt::cuda::current_stream();
  pt::cuda::dispatch_float(weight.dtype(), "embedding", [&]<class T>() {
    dispatch_ids(ids.dtype(), [&]<class I>() {
      embedding_fwd_kernel<T, I><<<grid_for(n * c, 256), 256, 0, stream>>>(
          static_cast<const T*>(weight.data_ptr()), static_cast<const I*>(ids.data_ptr()),
          static_cast<T*>(out.data_ptr()), n, c);
      PT_CUDA_CHECK_LAUNCH();
    });
  });
  return out;
}

Tensor embedding_backward(const Tensor& grad_out, const Tensor& ids, int64_t num_rows, int64_t padding_idx) {
  PT_NVTX_RANGE("tensor/embedding_backward");
  const int64_t c = grad_out.size(-1), n = ids.numel();
  PT_CHECK(n <= INT_MAX && num_rows <= INT_MAX, "embedding_backward: ", ids.describe(), " with ", num_rows,
           " rows is beyond the 2^31 entries the CUDA sort here handles");
  check_ids_in_range(ids, num_rows, "embedding_backward", "num_rows " + std::to_string(num_rows));
  cudaStream_t stream = pt::cuda::current_stream();
  Tensor out = Tensor::empty({num_rows, c}, grad_out.dtype(), Device::cuda);
  if (out.numel() == 0) return out;
  PT_CUDA_CHECK(cudaMemsetAsync(out.data_ptr(), 0, out.nbytes(), stream));  // all-zero bits are 0.0 in every float type
  if (n == 0 || c == 0) return out;

  Tensor sort_buf = Tensor::empty({4, n}, DType::i32, Device::cuda);  // keys in/out, positions in/out
  int* keys_in = sort_buf.data<int32_t>();
  int* keys_out = keys_in + n;
  int* pos_in = keys_out + n;
  int* pos_out = pos_in + n;
  dispatch_ids(ids.dtype(), [&]<class I>() {
    embedding_keys_bwd_kernel<I><<<grid_for(n, 256), 256, 0, stream>>>(static_cast<const I*>(ids.data_ptr()), keys_in,
                                                                        pos_in, n);
    PT_CUDA_CHECK_LAUNCH();
  });
  int end_bit = 1;  // only the bits an id can have
  while (end_bit < 31 && (int64_t(1) << end_bit) < num_rows) ++end_bit;
  size_t bytes = 0;
  PT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys_in, keys_out, pos_in, pos_out, int(n), 0, end_bit,
                                                stream));
  Tensor scratch = Tensor::empty({int64_t(std::max<size_t>(bytes, 1))}, DType::u8, Device::cuda);
  PT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(scratch.data_ptr(), bytes, keys_in, keys_out, pos_in, pos_out, int(n),
                                                0, end_bit, stream));

  const int threads = int(std::clamp<int64_t>(pt::cuda::ceil_div(c, 32) * 32, 32, 256));
  pt::cuda::dispatch_float(grad_out.dtype(), "embedding_backward", [&]<class T>() {
    embedding_bwd_kernel<T><<<unsigned(std::min(n, kMaxGrid)), threads, 0, stream>>>(
        static_cast<const T*>(grad_out.data_ptr()), keys_out, pos_out, static_cast<T*>(out.data_ptr()), n, c,
        padding_idx);
    PT_CUDA_CHECK_LAUNCH();
  });
  return out;
}

}  // namespace pt::cuda_ops
