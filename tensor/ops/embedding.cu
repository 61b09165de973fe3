// Embedding gather and backward scatter-add on CUDA.
//  - Ids are range-checked on the device by the kernels that read them: a bad id is never used (its output
//    row is 0, its gradient rows are dropped) and its first position is reported at the next host
//    synchronisation (tensor/cuda/device_checks.h), so a call costs no host round trip.
//  - forward: one thread per output element (a warp copies 32 consecutive columns of one row).
//  - backward: deterministic, without float atomics: (id, position) pairs are radix-sorted (CUB, stable,
//    so positions stay ascending within an id); one block per run of equal ids sums those gradient
//    rows in position order, in f32 (f64 for f64) - the CPU reference's order.
#include <algorithm>
#include <climits>
#include <string>
#include <cub/device/device_radix_sort.cuh>

#include "tensor/cuda/device_checks.h"
#include "tensor/ops/checks.h"
#include "tensor/ops/cuda_common.cuh"
#include "tensor/ops/cuda_ops.h"

namespace pt::cuda_ops {
namespace {

using namespace pt::cuda;

__device__ __forceinline__ bool id_in_range(int64_t id, int64_t rows) { return id >= 0 && id < rows; }

// Only the check, for ids with no columns to gather (c == 0).
template <class I>
__global__ void embedding_check_fwd_kernel(const I* ids, int64_t n, int64_t rows, DeviceIndexCheck check) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    if (!id_in_range(int64_t(ids[i]), rows)) report_bad_index(check, i);
}

template <class T, class I>
__global__ void embedding_fwd_kernel(const T* w, const I* ids, T* out, int64_t n, int64_t c, int64_t rows,
                                     DeviceIndexCheck check) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n * c; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t position = i / c, id = int64_t(ids[position]);
    if (id_in_range(id, rows)) {
      out[i] = w[id * c + i % c];
    } else {
      store(out + i, acc_t<T>(0));
      if (i % c == 0) report_bad_index(check, position);
    }
  }
}

// Sort input: key = id, value = position. A bad id is reported and gets key `rows`, after every real id.
template <class I>
__global__ void embedding_keys_bwd_kernel(const I* ids, int* keys, int* positions, int64_t n, int64_t rows,
                                          DeviceIndexCheck check) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t id = int64_t(ids[i]);
    const bool ok = id_in_range(id, rows);
    if (!ok) report_bad_index(check, i);
    keys[i] = int(ok ? id : rows);
    positions[i] = int(i);
  }
}

// Block b handles sorted entry b if it starts a run of equal ids: out[id] = sum of grad rows of the run.
template <class T>
__global__ void embedding_bwd_kernel(const T* grad, const int* keys, const int* positions, T* out, int64_t n,
                                     int64_t c, int64_t rows, int64_t padding_idx) {
  using A = acc_t<T>;
  for (int64_t b = blockIdx.x; b < n; b += gridDim.x) {
    const int id = keys[b];
    if ((b > 0 && keys[b - 1] == id) || id == padding_idx || id >= rows) continue;
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

// A device-side check of ids (contiguous) against [0, rows); a failure is reported with CPU's message, the bad
// id read back then (ids is kept alive until the report).
DeviceIndexCheck ids_check(const Tensor& ids, int64_t rows, const char* op, std::string table) {
  return begin_index_check(ids.numel(), [ids, rows, op, table = std::move(table)](int64_t position) {
    const int64_t id = int64_t(ids.reshape({-1}).select(0, position).item());
    return checks::bad_id_message(op, id, position, ids, rows, table) + " (checked on the device)";
  });
}

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  PT_NVTX_RANGE("tensor/embedding");
  const int64_t rows = weight.size(0), c = weight.size(1), n = ids.numel();
  Shape out_shape = ids.shape();
  out_shape.push_back(c);
  Tensor out = Tensor::empty(out_shape, weight.dtype(), Device::cuda);
  if (n == 0) return out;
  const DeviceIndexCheck check = ids_check(ids, rows, "embedding", "weight " + weight.describe());
  cudaStream_t stream = pt::cuda::current_stream();
  dispatch_ids(ids.dtype(), [&]<class I>() {
    const I* pids = static_cast<const I*>(ids.data_ptr());
    if (c == 0) {
      embedding_check_fwd_kernel<I><<<grid_for(n), kThreads, 0, stream>>>(pids, n, rows, check);
    } else {
      pt::cuda::dispatch_float(weight.dtype(), "embedding", [&]<class T>() {
        embedding_fwd_kernel<T, I><<<grid_for(n * c), kThreads, 0, stream>>>(
            static_cast<const T*>(weight.data_ptr()), pids, static_cast<T*>(out.data_ptr()), n, c, rows, check);
      });
    }
    PT_CUDA_CHECK_LAUNCH();
  });
  return out;
}

Tensor embedding_backward(const Tensor& grad_out, const Tensor& ids, int64_t num_rows, int64_t padding_idx) {
  PT_NVTX_RANGE("tensor/embedding_backward");
  const int64_t c = grad_out.size(-1), n = ids.numel();
  PT_CHECK(n <= INT_MAX && num_rows <= INT_MAX, "embedding_backward: ", ids.describe(), " with ", num_rows,
           " rows is beyond the 2^31 entries the CUDA sort here handles");
  cudaStream_t stream = pt::cuda::current_stream();
  Tensor out = Tensor::empty({num_rows, c}, grad_out.dtype(), Device::cuda);
  if (out.numel() > 0)  // all-zero bits are 0.0 in every float type
    PT_CUDA_CHECK(cudaMemsetAsync(out.data_ptr(), 0, out.nbytes(), stream));
  if (n == 0) return out;
  const DeviceIndexCheck check = ids_check(ids, num_rows, "embedding_backward", "num_rows " + std::to_string(num_rows));

  Tensor sort_buf = Tensor::empty({4, n}, DType::i32, Device::cuda);  // keys in/out, positions in/out
  int* keys_in = sort_buf.data<int32_t>();
  int* keys_out = keys_in + n;
  int* pos_in = keys_out + n;
  int* pos_out = pos_in + n;
  dispatch_ids(ids.dtype(), [&]<class I>() {
    embedding_keys_bwd_kernel<I><<<grid_for(n), kThreads, 0, stream>>>(static_cast<const I*>(ids.data_ptr()), keys_in,
                                                                        pos_in, n, num_rows, check);
    PT_CUDA_CHECK_LAUNCH();
  });
  if (out.numel() == 0) return out;  // the ids are checked all the same
  int end_bit = 1;  // only the bits a key can have: ids and the bad-id key num_rows
  while (end_bit < 31 && (int64_t(1) << end_bit) <= num_rows) ++end_bit;
  size_t bytes = 0;
  PT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys_in, keys_out, pos_in, pos_out, int(n), 0, end_bit,
                                                stream));
  Tensor scratch = Tensor::empty({int64_t(std::max<size_t>(bytes, 1))}, DType::u8, Device::cuda);
  PT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(scratch.data_ptr(), bytes, keys_in, keys_out, pos_in, pos_out, int(n),
                                                0, end_bit, stream));

  const int threads = int(std::clamp<int64_t>(pt::cuda::ceil_div(c, 32) * 32, 32, 256));
  pt::cuda::dispatch_float(grad_out.dtype(), "embedding_backward", [&]<class T>() {
    embedding_bwd_kernel<T><<<grid_for(n, 1), threads, 0, stream>>>(
        static_cast<const T*>(grad_out.data_ptr()), keys_out, pos_out, static_cast<T*>(out.data_ptr()), n, c,
        num_rows, padding_idx);
    PT_CUDA_CHECK_LAUNCH();
  });
  return out;
}

}  // namespace pt::cuda_ops
