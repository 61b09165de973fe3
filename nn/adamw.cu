// Fused masked AdamW: one kernel launch updates every parameter (multi-tensor apply). The host writes a
// small descriptor array {p, g, m, v, keep, n, per-tensor scalars} each step and keeps a per-block chunk
// table {tensor, chunk} that is rebuilt only when the set of tensor sizes changes. Each block updates one
// chunk of kChunk elements in a single pass: 16-byte float4 accesses for p/g/m/v and 4 mask bytes as one
// uchar4 when the tensor's pointers allow it, then a scalar tail (at most 3 elements, last chunk only).
#include <cstring>

#include "nn/adamw.h"
#include "tensor/ops/cuda_common.cuh"

namespace pt::nn::detail {
namespace {

// Elements per block. A multiple of 4, so every chunk of a 16-byte-aligned tensor starts 16-byte aligned
// (and its mask 4-byte aligned); 64 float4 per thread-block pass keeps thousands of blocks for 125M params.
constexpr int64_t kChunk = 16384;
constexpr int kBlock = 256;

struct Chunk {
  int32_t tensor;  // index into the descriptor array
  int32_t index;   // elements [index*kChunk, min(n, (index+1)*kChunk)) of that tensor
};

struct Hyper {
  float beta2, one_minus_beta1, one_minus_beta2, eps;
};

// torch's order of operations and rounding points in f32: the decayed p and v*beta2 are rounded products
// (__fmul_rn keeps the compiler from fusing them into the next FMA), as when torch stores them in place.
__device__ __forceinline__ void adamw_element(float& p, float g, float& m, float& v, bool keep,
                                              const AdamWFusedTensor& d, const Hyper& h) {
  if (!keep) {  // pruned: exact +0.0 in p, m and v whatever the gradient, decay or old values say
    p = 0.0f;
    m = 0.0f;
    v = 0.0f;
    return;
  }
  p = __fmul_rn(p, d.decay);                                  // p.mul_(1 - lr*wd)
  m = fmaf(h.one_minus_beta1, g - m, m);                      // m.lerp_(g, 1 - beta1)
  v = fmaf(h.one_minus_beta2, g * g, __fmul_rn(v, h.beta2));  // v.mul_(beta2).addcmul_(g, g, 1 - beta2)
  const float denom = sqrtf(v) / d.bc2_sqrt + h.eps;
  p = fmaf(-d.step_size, m / denom, p);                       // p.addcdiv_(m, denom, -lr/bc1)
}

__global__ void __launch_bounds__(kBlock)
    adamw_multi_tensor_kernel(const AdamWFusedTensor* __restrict__ tensors, const Chunk* __restrict__ chunks,
                              Hyper h) {
  const Chunk c = chunks[blockIdx.x];
  const AdamWFusedTensor d = tensors[c.tensor];  // same address for the whole block: one broadcast load
  const int64_t start = int64_t(c.index) * kChunk;
  const int len = int(d.n - start < kChunk ? d.n - start : kChunk);
  float* __restrict__ p = d.p + start;
  const float* __restrict__ g = d.g + start;
  float* __restrict__ m = d.m + start;
  float* __restrict__ v = d.v + start;
  const uint8_t* __restrict__ keep = d.keep ? d.keep + start : nullptr;

  int done = 0;
  if (d.vectorized) {
    const int nvec = len >> 2;
    float4* p4 = reinterpret_cast<float4*>(p);
    const float4* g4 = reinterpret_cast<const float4*>(g);
    float4* m4 = reinterpret_cast<float4*>(m);
    float4* v4 = reinterpret_cast<float4*>(v);
    const uchar4* k4 = reinterpret_cast<const uchar4*>(keep);
    for (int i = threadIdx.x; i < nvec; i += kBlock) {
      float4 pv = p4[i], mv = m4[i], vv = v4[i];
      const float4 gv = __ldg(g4 + i);
      const uchar4 kv = k4 ? __ldg(k4 + i) : make_uchar4(1, 1, 1, 1);
      adamw_element(pv.x, gv.x, mv.x, vv.x, kv.x != 0, d, h);
      adamw_element(pv.y, gv.y, mv.y, vv.y, kv.y != 0, d, h);
      adamw_element(pv.z, gv.z, mv.z, vv.z, kv.z != 0, d, h);
      adamw_element(pv.w, gv.w, mv.w, vv.w, kv.w != 0, d, h);
      p4[i] = pv;
      m4[i] = mv;
      v4[i] = vv;
    }
    done = nvec << 2;
  }
  for (int i = done + threadIdx.x; i < len; i += kBlock) {  // scalar: the tail, or unaligned tensors
    float pv = p[i], mv = m[i], vv = v[i];
    adamw_element(pv, __ldg(g + i), mv, vv, keep ? __ldg(keep + i) != 0 : true, d, h);
    p[i] = pv;
    m[i] = mv;
    v[i] = vv;
  }
}

bool aligned(const void* ptr, uintptr_t bytes) { return (reinterpret_cast<uintptr_t>(ptr) % bytes) == 0; }

// A copy of host bytes on the device, in a buffer from the caching allocator.
Tensor upload_bytes(const void* data, size_t nbytes) {
  Tensor host = Tensor::empty({int64_t(nbytes)}, DType::u8, Device::cpu);
  std::memcpy(host.data_ptr(), data, nbytes);
  return host.to(Device::cuda);
}

}  // namespace

void adamw_fused_step(std::vector<AdamWFusedTensor>& tensors, double beta1, double beta2, double eps,
                      AdamW::FusedCache& cache) {
  if (tensors.empty()) return;
  PT_CHECK(tensors.size() <= size_t(INT32_MAX), "adamw_fused_step: too many tensors (", tensors.size(), ")");
  std::vector<int64_t> sizes(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    AdamWFusedTensor& t = tensors[i];
    // Vector path only when every 16-byte access is aligned; chunk starts are multiples of 4 elements.
    t.vectorized = t.n >= 4 && aligned(t.p, 16) && aligned(t.g, 16) && aligned(t.m, 16) && aligned(t.v, 16) &&
                   (t.keep == nullptr || aligned(t.keep, 4));
    sizes[i] = t.n;
  }

  if (sizes != cache.sizes) {  // new parameter set (the first step included): rebuild the chunk table
    std::vector<Chunk> table;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const int64_t n_chunks = (sizes[i] + kChunk - 1) / kChunk;  // 0 for empty tensors: no block
      PT_CHECK(n_chunks <= INT32_MAX, "adamw_fused_step: tensor ", i, " has ", sizes[i], " elements (too many)");
      for (int64_t c = 0; c < n_chunks; ++c) table.push_back({int32_t(i), int32_t(c)});
    }
    PT_CHECK(table.size() <= size_t(INT32_MAX), "adamw_fused_step: ", table.size(), " chunks exceed the grid limit");
    cache.num_chunks = int64_t(table.size());
    cache.chunks = table.empty() ? Tensor() : upload_bytes(table.data(), table.size() * sizeof(Chunk));
    cache.sizes = sizes;
  }
  if (cache.num_chunks == 0) return;

  // Descriptors change every step (gradient buffers, lr, step counts). The copy is ordered on the stream
  // after the previous step's kernel, so overwriting the buffer is safe; pageable memory is staged by
  // cudaMemcpyAsync before it returns.
  const size_t nbytes = tensors.size() * sizeof(AdamWFusedTensor);
  if (!cache.descriptors.defined() || size_t(cache.descriptors.numel()) < nbytes)
    cache.descriptors = Tensor::empty({int64_t(nbytes)}, DType::u8, Device::cuda);
  cudaStream_t stream = cuda::current_stream();
  PT_CUDA_CHECK(cudaMemcpyAsync(cache.descriptors.data_ptr(), tensors.data(), nbytes, cudaMemcpyHostToDevice, stream));

  const Hyper h{float(beta2), float(1.0 - beta1), float(1.0 - beta2), float(eps)};
  adamw_multi_tensor_kernel<<<unsigned(cache.num_chunks), kBlock, 0, stream>>>(
      static_cast<const AdamWFusedTensor*>(cache.descriptors.data_ptr()),
      static_cast<const Chunk*>(cache.chunks.data_ptr()), h);
  PT_CUDA_CHECK_LAUNCH();
}

}  // namespace pt::nn::detail
