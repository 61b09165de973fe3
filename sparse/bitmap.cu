// CUDA side of the bitmap format (sparse/bitmap.h): y = x·Wᵀ + b for f16 / bf16, f32 accumulation.
//
// Storage recap: words [out, wpr] (bit b of word w = column 32w + b kept), offsets [out, wpr] (absolute index in
// `values` of the word's first kept value), values [nnz] in row / word / bit order.
//
// decode (tokens <= kBitmapDecodeMaxTokens): one warp per output row, kDecodeWarps rows per block. Lane j walks
//   words j, j + 32, ... of its row: for each set bit it multiplies the value with x[t, 32w + b] for every token
//   (a compile-time maximum MAXT of tokens, 1 / 2 / 4 / 8, with the runtime count <= MAXT), then the warp sums
//   each token's partial with shuffles and lane t stores token t.
//
// prefill (more tokens): "load sparse, expand in shared memory, multiply dense on tensor cores". A block of
//   4 warps owns a tile of 64 tokens × 64 output rows and walks K in steps of 64 input columns (2 bitmap words
//   per row):
//     - thread tid expands row-word (r = tid / 2, word 2·kt + tid % 2): zeroes its 32 columns of the W tile
//       Ws[r][...] and scatters the word's kept values into them (no other thread touches that range);
//     - the X tile Xs[64 tokens][64 cols] is loaded, zero outside tokens < T and cols < in;
//     - each warp computes a 32 × 32 sub-tile (2 × 2 WMMA 16×16×16 fragments, f32 accumulators):
//         C[m = token][n = out] += Σ_k A[m][k] · B[k][n],  A = Xs (row-major, ld kLd),
//         B[k][n] = W[n][k] = Ws[n][k], i.e. Ws read as a col-major K × N matrix with ld kLd.
//   Epilogue: accumulators go to shared memory as floats (reusing the tile buffers), then bias, bounds checks,
//   conversion and coalesced stores of y[token][out].
#include <mma.h>

#include "sparse/sparse_cuda.h"
#include "tensor/ops/cuda_common.cuh"

namespace pt::sparse::cuda_kernels {

namespace {

// ---- element helpers -----------------------------------------------------------------------------------
// Read-only loads of 16-bit floats through the texture path (__ldg on the raw 16 bits).
__device__ __forceinline__ float ldg_float(const __half* p) {
  return __half2float(__ushort_as_half(__ldg(reinterpret_cast<const unsigned short*>(p))));
}
__device__ __forceinline__ float ldg_float(const __nv_bfloat16* p) {
  return __bfloat162float(__ushort_as_bfloat16(__ldg(reinterpret_cast<const unsigned short*>(p))));
}

// ---- decode: a warp per output row -------------------------------------------------------------------------
constexpr int kDecodeWarps = 8;

template <class T, int MAXT>
__global__ void __launch_bounds__(kDecodeWarps * 32)
    bitmap_decode_kernel(T* __restrict__ y, const T* __restrict__ x, const uint32_t* __restrict__ words,
                         const int32_t* __restrict__ offsets, const T* __restrict__ values, const T* __restrict__ bias,
                         int tokens, int64_t in, int64_t out, int64_t wpr) {
  const int lane = threadIdx.x & 31;
  const int64_t o = int64_t(blockIdx.x) * kDecodeWarps + (threadIdx.x >> 5);
  if (o >= out) return;  // whole warp leaves together: the shuffles below see full warps only

  float acc[MAXT];
#pragma unroll
  for (int t = 0; t < MAXT; ++t) acc[t] = 0.0f;

  const uint32_t* row_words = words + o * wpr;
  const int32_t* row_offsets = offsets + o * wpr;
  for (int64_t w = lane; w < wpr; w += 32) {
    uint32_t bits = __ldg(row_words + w);
    int64_t k = __ldg(row_offsets + w);
    const T* xw = x + w * 32;  // column 32w of token 0
    while (bits) {
      const int b = __ffs(int(bits)) - 1;
      bits &= bits - 1;
      const float v = ldg_float(values + k);
      ++k;
#pragma unroll
      for (int t = 0; t < MAXT; ++t)
        if (t < tokens) acc[t] += v * ldg_float(xw + int64_t(t) * in + b);
    }
  }

  float mine = 0.0f;  // lane t ends up holding token t's sum
#pragma unroll
  for (int t = 0; t < MAXT; ++t) {
    const float s = pt::cuda::warp_sum(acc[t]);
    if (lane == t) mine = s;
  }
  if (lane < tokens) {
    if (bias != nullptr) mine += pt::cuda::load(bias + o);
    pt::cuda::store(y + int64_t(lane) * out + o, mine);
  }
}

// ---- prefill: expand a W tile in shared memory, multiply on tensor cores ----------------------------------------
constexpr int kTile = 64;              // tokens per block tile = output rows per block tile = K step
constexpr int kPrefillThreads = 128;   // 4 warps, 2 × 2 over the 64 × 64 tile
constexpr int kLd = kTile + 8;         // smem row length of the 16-bit tiles (multiple of 8; rows 144 B apart)
constexpr int kLdC = kTile + 4;        // smem row length of the float output tile (multiple of 4)
constexpr int kTileElems = kTile * kLd;
constexpr int kSmemTileBytes = 2 * kTileElems * 2;          // Xs + Ws, 16-bit elements
constexpr int kSmemOutBytes = kTile * kLdC * int(sizeof(float));
constexpr int kSmemBytes = kSmemTileBytes > kSmemOutBytes ? kSmemTileBytes : kSmemOutBytes;
static_assert(kSmemBytes <= 48 * 1024, "static shared memory limit");
static_assert((kLd * 2) % 16 == 0 && (16 * kLd * 2) % 32 == 0, "WMMA needs 32-byte aligned fragment pointers");
static_assert((16 * kLdC * 4) % 32 == 0, "WMMA needs 32-byte aligned fragment pointers");
static_assert(kPrefillThreads == 2 * kTile, "one thread per row-word of the W tile (64 rows × 2 words)");

template <class T>
__global__ void __launch_bounds__(kPrefillThreads)
    bitmap_prefill_kernel(T* __restrict__ y, const T* __restrict__ x, const uint32_t* __restrict__ words,
                          const int32_t* __restrict__ offsets, const T* __restrict__ values, const T* __restrict__ bias,
                          int64_t tokens, int64_t in, int64_t out, int64_t wpr, bool x_vec16) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  __shared__ __align__(128) unsigned char smem[kSmemBytes];
  T* xs = reinterpret_cast<T*>(smem);                  // Xs[token][k], row-major, ld kLd
  T* ws = reinterpret_cast<T*>(smem) + kTileElems;     // Ws[out row][k], row-major, ld kLd (= Wᵀ col-major)
  float* cs = reinterpret_cast<float*>(smem);          // epilogue: Cs[token][out row], ld kLdC (aliases Xs/Ws)

  const int tid = threadIdx.x, warp = tid >> 5;
  const int wm = warp >> 1, wn = warp & 1;  // warp sub-tile: tokens 32·wm.., output rows 32·wn..
  const int64_t o0 = int64_t(blockIdx.x) * kTile;  // first output row of the tile
  const int64_t t0 = int64_t(blockIdx.y) * kTile;  // first token of the tile

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  // This thread's row-word of the W tile.
  const int er = tid >> 1, ewi = tid & 1;
  const int64_t erow = o0 + er;
  uint4* const ws_mine = reinterpret_cast<uint4*>(ws + er * kLd + ewi * 32);  // 32 elements = 4 × 16 bytes
  T* const ws_row = ws + er * kLd + ewi * 32;

  const int64_t k_tiles = (in + kTile - 1) / kTile;
  for (int64_t kt = 0; kt < k_tiles; ++kt) {
    const int64_t kbase = kt * kTile;
    // (1) Expand: zero my 32 columns, then write the kept values of my word (bits past `in` are 0 by construction).
#pragma unroll
    for (int q = 0; q < 4; ++q) ws_mine[q] = make_uint4(0u, 0u, 0u, 0u);
    const int64_t w = kt * 2 + ewi;
    if (erow < out && w < wpr) {
      uint32_t bits = __ldg(words + erow * wpr + w);
      int64_t k = __ldg(offsets + erow * wpr + w);
      while (bits) {
        const int b = __ffs(int(bits)) - 1;
        bits &= bits - 1;
        ws_row[b] = values[k++];
      }
    }
    // (2) X tile: 64 tokens × 64 columns, zero outside the matrix.
    if (x_vec16) {  // in % 8 == 0 and x 16-byte aligned: 8 elements per 16-byte load, never straddling `in`
#pragma unroll
      for (int q = 0; q < (kTile * kTile / 8) / kPrefillThreads; ++q) {
        const int c = tid + q * kPrefillThreads;
        const int r = c >> 3, ch = c & 7;
        const int64_t t = t0 + r, col = kbase + ch * 8;
        uint4 v = make_uint4(0u, 0u, 0u, 0u);
        if (t < tokens && col < in) v = __ldg(reinterpret_cast<const uint4*>(x + t * in + col));
        *reinterpret_cast<uint4*>(xs + r * kLd + ch * 8) = v;
      }
    } else {
      for (int e = tid; e < kTile * kTile; e += kPrefillThreads) {
        const int r = e / kTile, cc = e % kTile;
        const int64_t t = t0 + r, col = kbase + cc;
        xs[r * kLd + cc] = (t < tokens && col < in) ? x[t * in + col] : T(0.0f);
      }
    }
    __syncthreads();
    // (3) 4 k-substeps of 16 on tensor cores.
#pragma unroll
    for (int kk = 0; kk < kTile; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], xs + (wm * 32 + i * 16) * kLd + kk, kLd);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], ws + (wn * 32 + j * 16) * kLd + kk, kLd);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();  // the tiles are rewritten by the next K step (or reused as Cs below)
  }

  // Epilogue: Cs[token][out row] in shared memory, then bias + convert + bounds-checked, coalesced stores.
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(cs + (wm * 32 + i * 16) * kLdC + wn * 32 + j * 16, acc[i][j], kLdC, wmma::mem_row_major);
  __syncthreads();
  for (int e = tid; e < kTile * kTile; e += kPrefillThreads) {
    const int r = e / kTile, c = e % kTile;  // consecutive threads: consecutive output rows of one token
    const int64_t t = t0 + r, o = o0 + c;
    if (t < tokens && o < out) {
      float v = cs[r * kLdC + c];
      if (bias != nullptr) v += pt::cuda::load(bias + o);
      pt::cuda::store(y + t * out + o, v);
    }
  }
#else
  __trap();  // the host refuses devices below sm_80 before launching
#endif
}

template <class T>
void launch_decode(const Tensor& out, const Tensor& x2, const BitmapWeight& w, const Tensor& bias, int tokens,
                   cudaStream_t stream) {
  const int64_t n_out = w.out_features(), in = w.in_features(), wpr = w.words_per_row();
  T* y = static_cast<T*>(out.data_ptr());
  const T* x = static_cast<const T*>(x2.data_ptr());
  const auto* words = reinterpret_cast<const uint32_t*>(w.words.data<int32_t>());
  const int32_t* offsets = w.offsets.data<int32_t>();
  const T* values = static_cast<const T*>(w.values.data_ptr());
  const T* b = bias.defined() ? static_cast<const T*>(bias.data_ptr()) : nullptr;
  const dim3 grid(unsigned(pt::cuda::ceil_div(n_out, kDecodeWarps)));
  const dim3 block(kDecodeWarps * 32);
  if (tokens <= 1)
    bitmap_decode_kernel<T, 1><<<grid, block, 0, stream>>>(y, x, words, offsets, values, b, tokens, in, n_out, wpr);
  else if (tokens <= 2)
    bitmap_decode_kernel<T, 2><<<grid, block, 0, stream>>>(y, x, words, offsets, values, b, tokens, in, n_out, wpr);
  else if (tokens <= 4)
    bitmap_decode_kernel<T, 4><<<grid, block, 0, stream>>>(y, x, words, offsets, values, b, tokens, in, n_out, wpr);
  else
    bitmap_decode_kernel<T, 8><<<grid, block, 0, stream>>>(y, x, words, offsets, values, b, tokens, in, n_out, wpr);
  PT_CUDA_CHECK_LAUNCH();
}

template <class T>
void launch_prefill(const Tensor& out, const Tensor& x2, const BitmapWeight& w, const Tensor& bias, int64_t tokens,
                    cudaStream_t stream) {
  const int64_t n_out = w.out_features(), in = w.in_features(), wpr = w.words_per_row();
  const T* x = static_cast<const T*>(x2.data_ptr());
  const bool x_vec16 = in % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
  const int64_t token_tiles = pt::cuda::ceil_div(tokens, kTile), row_tiles = pt::cuda::ceil_div(n_out, kTile);
  PT_CHECK(token_tiles <= 65535, "bitmap_linear on cuda: ", tokens, " tokens exceed the prefill kernel's grid (at most ",
           65535 * kTile, "); split the batch");
  PT_CHECK(row_tiles <= 0x7FFFFFFF, "bitmap_linear on cuda: too many output features (", n_out, ")");
  const dim3 grid(static_cast<unsigned>(row_tiles), static_cast<unsigned>(token_tiles));
  bitmap_prefill_kernel<T><<<grid, kPrefillThreads, 0, stream>>>(
      static_cast<T*>(out.data_ptr()), x, reinterpret_cast<const uint32_t*>(w.words.data<int32_t>()),
      w.offsets.data<int32_t>(), static_cast<const T*>(w.values.data_ptr()),
      bias.defined() ? static_cast<const T*>(bias.data_ptr()) : nullptr, tokens, in, n_out, wpr, x_vec16);
  PT_CUDA_CHECK_LAUNCH();
}


}  // namespace

void bitmap_linear(const Tensor& out, const Tensor& x2, const BitmapWeight& w, const Tensor& bias) {
  PT_NVTX_RANGE("sparse/bitmap_linear");
  const DType dt = w.values.dtype();
  PT_CHECK(dt == DType::f16 || dt == DType::bf16, "bitmap_linear: dtype ", dtype_name(dt),
           " not supported on cuda (allowed: f16, bf16)");
  const int64_t tokens = x2.size(0), in = w.in_features(), n_out = w.out_features();
  PT_CHECK(x2.is_cuda() && out.is_cuda() && w.values.is_cuda() && w.words.is_cuda() && w.offsets.is_cuda(),
           "bitmap_linear: tensors must be on cuda");
  PT_CHECK(x2.dim() == 2 && x2.size(1) == in && x2.is_contiguous() && x2.dtype() == dt, "bitmap_linear: x must be a ",
           "contiguous ", dtype_name(dt), " [tokens, ", in, "] matrix, got ", x2.describe());
  PT_CHECK(out.dim() == 2 && out.size(0) == tokens && out.size(1) == n_out && out.is_contiguous() && out.dtype() == dt,
           "bitmap_linear: out must be a contiguous ", dtype_name(dt), " [", tokens, ", ", n_out, "] matrix, got ",
           out.describe());
  PT_CHECK(!bias.defined() || (bias.numel() == n_out && bias.is_contiguous() && bias.dtype() == dt && bias.is_cuda()),
           "bitmap_linear: bias must be a contiguous ", dtype_name(dt), " [", n_out, "] vector, got ", bias.describe());
  PT_CHECK(w.words.is_contiguous() && w.offsets.is_contiguous() && w.values.is_contiguous(),
           "bitmap_linear: the packed weight must be contiguous");
  if (tokens == 0 || n_out == 0) return;
  cudaStream_t stream = pt::cuda::current_stream();
  // in == 0 needs no special case: both kernels then store bias (or 0).
  PT_CHECK(pt::cuda::ceil_div(n_out, kDecodeWarps) <= 0x7FFFFFFF, "bitmap_linear on cuda: too many output features (",
           n_out, ")");

  if (tokens <= kBitmapDecodeMaxTokens) {
    if (dt == DType::f16) launch_decode<__half>(out, x2, w, bias, int(tokens), stream);
    else launch_decode<__nv_bfloat16>(out, x2, w, bias, int(tokens), stream);
  } else {
    const int major = pt::cuda::compute_capability_major();
    PT_CHECK(major >= 8, "bitmap_linear on cuda: the tensor-core prefill kernel (", tokens,
             " tokens) needs compute capability 8.0 or newer, this device is ", major, ".x");
    if (dt == DType::f16) launch_prefill<__half>(out, x2, w, bias, tokens, stream);
    else launch_prefill<__nv_bfloat16>(out, x2, w, bias, tokens, stream);
  }
}

}  // namespace pt::sparse::cuda_kernels
