// CUDA side of the 2:4 format (sparse/two_four.h): y = x·Wᵀ + b on sparse tensor cores (mma.sp, sm_80+),
// f16 / bf16 in, f32 accumulation. Needs in % 32 == 0 (one metadata word = one k-step of 32 inputs).
//
// One mma.sp.m16n8k32 computes D[16 × 8] += A[16 × 32] · B[32 × 8] with
//   A = 16 output rows of W (the sparse operand: 2 kept values per group of 4 inputs + metadata),
//   B = Xᵀ for 8 tokens (the "col" layout of B is X row-major: a token's inputs are contiguous),
//   D = Yᵀ tile: row = output feature, column = token.
//
// Fragment layouts (PTX ISA "Matrix fragments for sparse mma.m16n8k32 with .f16/.bf16"; per lane:
// g = groupID = lane >> 2, tig = threadID_in_group = lane % 4; k relative to the k-step start k0, kc = k0 / 2):
//   A: 4 × .b32, each the 2 kept values of one group of 4 logical columns:
//        a0,a1 (reg 0): row g,     logical cols 4·tig .. 4·tig+3       -> values[row][kc + 2·tig .. +1]
//        a2,a3 (reg 1): row g + 8, same columns
//        a4,a5 (reg 2): row g,     logical cols 16 + 4·tig .. +3        -> values[row][kc + 8 + 2·tig .. +1]
//        a6,a7 (reg 3): row g + 8, same columns
//      i.e. one aligned u32 load each (values row o, compressed columns are pairs).
//   B: 4 × .b32: reg j holds B[k = 8j + 2·tig, 8j + 2·tig + 1][n = g] = x[n0 + g][k0 + 8j + 2·tig .. +1] (u32 load).
//   C/D: 4 × f32: c0,c1 = (row g, cols 2·tig, 2·tig+1); c2,c3 = (row g + 8, same cols).
//   metadata (selector 0: lanes with tig 0 and 1 supply it): see mma_sp_metadata below.
//
// Kernel: a block of 4 warps; the warps are split into RG = 4 / KSPLIT row groups of 16 output rows, and the
// KSPLIT warps of a row group take every KSPLIT-th k-step. Each warp holds NFRAG n-fragments of 8 tokens
// (NFRAG·4 f32 accumulators per lane) and loads A, metadata and B straight from global memory (u32 loads,
// predicated to zero for rows >= out / tokens >= T; out-of-range rows get the valid metadata 0x4 per group).
// Epilogue: partial sums to shared memory, summed over the k-split warps, + bias, converted, coalesced stores.
//   prefill (tokens > 8): NFRAG = 8, KSPLIT = 1  -> block tile 64 output rows × 64 tokens;
//   decode (tokens <= 8): NFRAG = 1, KSPLIT = 4  -> block tile 16 output rows × 8 tokens, K split over 4 warps.
#include <cstdint>

#include "sparse/sparse_cuda.h"
#include "tensor/ops/cuda_common.cuh"

// mma.sp::ordered_metadata (PTX 8.5, CUDA 12.5+) is the form NVIDIA recommends; it requires the two indices of a
// nibble in increasing order, which TwoFourWeight guarantees (distinct, ascending). Older toolkits get plain mma.sp.
#if defined(__CUDACC_VER_MAJOR__) && (__CUDACC_VER_MAJOR__ > 12 || (__CUDACC_VER_MAJOR__ == 12 && __CUDACC_VER_MINOR__ >= 5))
#define PT_MMA_SP "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32"
#else
#define PT_MMA_SP "mma.sp.sync.aligned.m16n8k32.row.col.f32"
#endif

namespace pt::sparse::cuda_kernels {

namespace two_four_detail {

// ---- fragment indexing (BEGIN two_four fragment indexing) ----------------------------------------------------
// Host-device so that a CPU emulation of the warp can check them against the PTX layout.

// u32 index (into values viewed as u32 pairs, row length in/4 words) of A register `reg` (0..3) for the lane
// (g, tig) in k-step s, of the 16-row tile starting at row r0. Row: g (reg 0, 2) or g + 8 (reg 1, 3);
// compressed column pair: 8·s (k-step) + 4·(reg / 2) (logical cols 16..31) + tig.
__host__ __device__ __forceinline__ int64_t a_word_index(int64_t r0, int reg, int g, int tig, int64_t s,
                                                         int64_t row_words) {
  const int64_t row = r0 + g + ((reg & 1) ? 8 : 0);
  return row * row_words + 8 * s + 4 * (reg >> 1) + tig;
}
__host__ __device__ __forceinline__ int64_t a_row(int64_t r0, int reg, int g) { return r0 + g + ((reg & 1) ? 8 : 0); }

// u32 index (into x viewed as u32 pairs, row length in/2 words) of B register j (0..3) in k-step s for token t:
// elements k0 + 8j + 2·tig and +1 of token t's row.
__host__ __device__ __forceinline__ int64_t b_word_index(int64_t t, int j, int tig, int64_t s, int64_t row_words) {
  return t * row_words + 16 * s + 4 * j + tig;
}

// Accumulator i (0..3) of n-fragment f for lane (g, tig): the output row offset (within the 16-row tile) and the
// token offset (within the block's token tile).
__host__ __device__ __forceinline__ int acc_row(int i, int g) { return g + ((i & 2) ? 8 : 0); }
__host__ __device__ __forceinline__ int acc_token(int f, int i, int tig) { return 8 * f + 2 * tig + (i & 1); }

// THE ASSUMPTION TO CHECK FIRST IF THE 2of4 GPU TEST FAILS: the metadata register of mma.sp m16n8k32 f16/bf16
// with sparsity selector 0 (PTX ISA figure "Sparse MMA .m16n8k32 metadata layout for .f16/.bf16", an image).
// Read as: lane (g, tig = 0) supplies the nibbles of logical columns 0..15 (groups 0..3 of the k-step) of row g in
// bits [15:0] and of row g + 8 in bits [31:16]; lane (g, tig = 1) the same for columns 16..31 (groups 4..7).
// Lanes with tig 2, 3 are ignored under selector 0 and get the same values as tig 0, 1.
// Our storage keeps one 32-bit word per row and k-step, nibble n = group n (low 2 bits first index, high 2 bits
// second), so word_lo = meta[r0 + g][s], word_hi = meta[r0 + g + 8][s].
__host__ __device__ __forceinline__ uint32_t mma_sp_metadata(uint32_t word_lo, uint32_t word_hi, int tig) {
  return (tig & 1) ? ((word_lo >> 16) | (word_hi & 0xFFFF0000u)) : ((word_lo & 0xFFFFu) | (word_hi << 16));
}

// Metadata of a row past `out`: index pair (0, 1) in every group, a valid pattern (its values are loaded as 0).
constexpr uint32_t kPadMetaWord = 0x44444444u;
// ---- (END two_four fragment indexing) ------------------------------------------------------------------------

}  // namespace two_four_detail

namespace {

using namespace two_four_detail;

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;

template <class T> struct MmaSp;
template <> struct MmaSp<__half> {
  __device__ __forceinline__ static void run(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[4],
                                             uint32_t meta) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(PT_MMA_SP ".f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9, %10, %11}, "
                 "{%0, %1, %2, %3}, %12, 0x0;\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(meta));
#else
    __trap();
#endif
  }
};
template <> struct MmaSp<__nv_bfloat16> {
  __device__ __forceinline__ static void run(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[4],
                                             uint32_t meta) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(PT_MMA_SP ".bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9, %10, %11}, "
                 "{%0, %1, %2, %3}, %12, 0x0;\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(meta));
#else
    __trap();
#endif
  }
};

template <class T, int NFRAG, int KSPLIT>
__global__ void __launch_bounds__(kThreads)
    two_four_kernel(T* __restrict__ y, const uint32_t* __restrict__ x32, const uint32_t* __restrict__ v32,
                    const uint32_t* __restrict__ meta, const T* __restrict__ bias, int64_t tokens, int64_t in,
                    int64_t out) {
  static_assert(kWarps % KSPLIT == 0, "the k-split must divide the warps");
  constexpr int RG = kWarps / KSPLIT;   // row groups of 16 output rows per block
  constexpr int ROWS = 16 * RG;         // output rows per block
  constexpr int TOKS = 8 * NFRAG;       // tokens per block
  constexpr int LDR = ROWS + 4;         // smem row (one token) length of the partial sums; +4 avoids bank conflicts
  __shared__ float red[KSPLIT * TOKS * LDR];

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, tig = lane & 3;
  const int rg = warp / KSPLIT, ks = warp % KSPLIT;
  const int64_t rb = int64_t(blockIdx.x) * ROWS;  // first output row of the block
  const int64_t r0 = rb + 16 * rg;                // first output row of this warp's 16-row tile
  const int64_t n0 = int64_t(blockIdx.y) * TOKS;  // first token of the block

  const int64_t steps = in / 32;                            // k-steps of 32 inputs
  const int64_t v_row_words = in / 4, x_row_words = in / 2;  // u32 words per row of values / of x
  const int64_t meta_row_words = in / 32;

  // Row validity per A register (regs 0, 2: row g; regs 1, 3: row g + 8).
  const bool ok_lo = a_row(r0, 0, g) < out, ok_hi = a_row(r0, 1, g) < out;

  float acc[NFRAG][4];
#pragma unroll
  for (int f = 0; f < NFRAG; ++f)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[f][i] = 0.0f;

  for (int64_t s = ks; s < steps; s += KSPLIT) {
    uint32_t a[4];
#pragma unroll
    for (int reg = 0; reg < 4; ++reg) {
      const bool ok = (reg & 1) ? ok_hi : ok_lo;
      a[reg] = ok ? __ldg(v32 + a_word_index(r0, reg, g, tig, s, v_row_words)) : 0u;
    }
    const uint32_t m_lo = ok_lo ? __ldg(meta + a_row(r0, 0, g) * meta_row_words + s) : kPadMetaWord;
    const uint32_t m_hi = ok_hi ? __ldg(meta + a_row(r0, 1, g) * meta_row_words + s) : kPadMetaWord;
    const uint32_t e = mma_sp_metadata(m_lo, m_hi, tig);
#pragma unroll
    for (int f = 0; f < NFRAG; ++f) {
      const int64_t t = n0 + 8 * f + g;  // this lane's token (B column n = g)
      uint32_t b[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = t < tokens ? __ldg(x32 + b_word_index(t, j, tig, s, x_row_words)) : 0u;
      MmaSp<T>::run(acc[f], a, b, e);
    }
  }

  // Partial sums to shared memory: red[ks][token][row], rows innermost.
#pragma unroll
  for (int f = 0; f < NFRAG; ++f)
#pragma unroll
    for (int i = 0; i < 4; ++i)
      red[(ks * TOKS + acc_token(f, i, tig)) * LDR + 16 * rg + acc_row(i, g)] = acc[f][i];
  __syncthreads();
  for (int idx = threadIdx.x; idx < TOKS * ROWS; idx += kThreads) {
    const int tl = idx / ROWS, rl = idx % ROWS;  // consecutive threads: consecutive output rows of one token
    const int64_t t = n0 + tl, o = rb + rl;
    if (t < tokens && o < out) {
      float v = 0.0f;
#pragma unroll
      for (int k = 0; k < KSPLIT; ++k) v += red[(k * TOKS + tl) * LDR + rl];
      if (bias != nullptr) v += pt::cuda::load(bias + o);
      pt::cuda::store(y + t * out + o, v);
    }
  }
}

template <class T, int NFRAG, int KSPLIT>
void launch(const Tensor& out, const Tensor& x2, const TwoFourWeight& w, const Tensor& bias, int64_t tokens,
            cudaStream_t stream) {
  constexpr int ROWS = 16 * (kWarps / KSPLIT), TOKS = 8 * NFRAG;
  const int64_t n_out = w.out_features(), in = w.in_features();
  const int64_t row_tiles = pt::cuda::ceil_div(n_out, ROWS), token_tiles = pt::cuda::ceil_div(tokens, TOKS);
  PT_CHECK(row_tiles <= 0x7FFFFFFF, "two_four_linear on cuda: too many output features (", n_out, ")");
  PT_CHECK(token_tiles <= 65535, "two_four_linear on cuda: ", tokens, " tokens exceed the kernel's grid (at most ",
           int64_t(65535) * TOKS, "); split the batch");
  const dim3 grid(static_cast<unsigned>(row_tiles), static_cast<unsigned>(token_tiles));
  two_four_kernel<T, NFRAG, KSPLIT><<<grid, kThreads, 0, stream>>>(
      static_cast<T*>(out.data_ptr()), static_cast<const uint32_t*>(x2.data_ptr()),
      static_cast<const uint32_t*>(w.values.data_ptr()), reinterpret_cast<const uint32_t*>(w.meta.data<int32_t>()),
      bias.defined() ? static_cast<const T*>(bias.data_ptr()) : nullptr, tokens, in, n_out);
  PT_CUDA_CHECK_LAUNCH();
}


}  // namespace

void two_four_linear(const Tensor& out, const Tensor& x2, const TwoFourWeight& w, const Tensor& bias) {
  PT_NVTX_RANGE("sparse/two_four_linear");
  const DType dt = w.values.dtype();
  PT_CHECK(dt == DType::f16 || dt == DType::bf16, "two_four_linear: dtype ", dtype_name(dt),
           " not supported on cuda (allowed: f16, bf16)");
  const int64_t tokens = x2.size(0), in = w.in_features(), n_out = w.out_features();
  PT_CHECK(in % 32 == 0, "two_four_linear on cuda: in_features ", in,
           " is not a multiple of 32; use csr or bitmap");
  PT_CHECK(x2.is_cuda() && out.is_cuda() && w.values.is_cuda() && w.meta.is_cuda(),
           "two_four_linear: tensors must be on cuda");
  PT_CHECK(x2.dim() == 2 && x2.size(1) == in && x2.is_contiguous() && x2.dtype() == dt,
           "two_four_linear: x must be a contiguous ", dtype_name(dt), " [tokens, ", in, "] matrix, got ",
           x2.describe());
  PT_CHECK(out.dim() == 2 && out.size(0) == tokens && out.size(1) == n_out && out.is_contiguous() && out.dtype() == dt,
           "two_four_linear: out must be a contiguous ", dtype_name(dt), " [", tokens, ", ", n_out, "] matrix, got ",
           out.describe());
  PT_CHECK(!bias.defined() || (bias.numel() == n_out && bias.is_contiguous() && bias.dtype() == dt && bias.is_cuda()),
           "two_four_linear: bias must be a contiguous ", dtype_name(dt), " [", n_out, "] vector, got ",
           bias.describe());
  PT_CHECK(w.values.is_contiguous() && w.meta.is_contiguous() && w.values.dim() == 2 && w.values.size(1) == in / 2 &&
               w.meta.dim() == 2 && w.meta.size(1) == in / 32,
           "two_four_linear: the packed weight must be contiguous values [", n_out, ", ", in / 2, "] and meta [",
           n_out, ", ", in / 32, "]");
  if (tokens == 0 || n_out == 0) return;
  // Pairs of 16-bit values are read as u32: the matrices must start 4-byte aligned (rows then are: in % 32 == 0).
  PT_CHECK(reinterpret_cast<uintptr_t>(x2.data_ptr()) % 4 == 0 && reinterpret_cast<uintptr_t>(w.values.data_ptr()) % 4 == 0,
           "two_four_linear on cuda: x and the packed values must be 4-byte aligned");
  const int major = pt::cuda::compute_capability_major();
  PT_CHECK(major >= 8, "two_four_linear on cuda: sparse tensor cores (mma.sp) need compute capability 8.0 or newer, "
           "this device is ", major, ".x; use csr or bitmap");
  cudaStream_t stream = pt::cuda::current_stream();
  if (tokens <= 8) {
    if (dt == DType::f16) launch<__half, 1, 4>(out, x2, w, bias, tokens, stream);
    else launch<__nv_bfloat16, 1, 4>(out, x2, w, bias, tokens, stream);
  } else {
    if (dt == DType::f16) launch<__half, 8, 1>(out, x2, w, bias, tokens, stream);
    else launch<__nv_bfloat16, 8, 1>(out, x2, w, bias, tokens, stream);
  }
}

}  // namespace pt::sparse::cuda_kernels
