// AVX-512 CPU kernels for the products that are few tokens wide (decode, small batches), where the portable
// loops (sparse/cpu_sparse_rows.h) or OpenBLAS's skinny sgemm leave most of the machine idle. f32 only; callers
// pick them through sparse/cpu_isa.h and keep the portable path for everything else. Every kernel computes
// y[t, o] = bias[o] + Σ_c W[o, c]·x[t, c] over the format's stored weights, like its portable sibling, in another
// summation order (16 lanes of partial sums, then a tree); bias may be null. `parallel`: rows split over the
// OpenMP threads; otherwise the calling thread does all of it.
#pragma once
#include <cstdint>

namespace pt::sparse::cpu {

// The widest token block of dense_rows_avx512 (more tokens are taken in blocks of this many).
inline constexpr int kDenseTokenBlock = 4;

// dense: W [out, in] row-major as stored (no copy, no packing), x [tokens, in], y [tokens, out]. Register blocks
// of 6 output rows × 4 tokens: each W row chunk loaded once per block meets 4 tokens, each token chunk 6 rows.
// x is first laid out token-interleaved in `scratch` (dense_rows_scratch_floats(tokens, in) floats).
int64_t dense_rows_scratch_floats(int64_t tokens, int64_t in);
void dense_rows_avx512(const float* x, const float* w, const float* bias, float* y, int64_t tokens, int64_t in,
                       int64_t out, float* scratch, bool parallel);

// bitmap (sparse/bitmap.h), one token: per 16 inputs, the next popcount values expanded to their columns
// (vexpandps, zeros elsewhere) and multiplied with x's 16 inputs, as the masked-dense product does (a pruned
// weight is a 0 that meets its input).
void bitmap_token_avx512(const uint32_t* words, const int32_t* offsets, const float* values, int64_t words_per_row,
                         const float* x, const float* bias, float* y, int64_t in, int64_t out, bool parallel);

// 2of4 (sparse/two_four.h), one token: per metadata word (8 groups, 16 values), the 16 column indices decoded in
// one vector (shift by lane, and, add the group base) and x's 32 inputs gathered by one two-register permute.
void two_four_token_avx512(const uint32_t* meta, const float* values, const float* x, const float* bias, float* y,
                           int64_t in, int64_t out, bool parallel);

}  // namespace pt::sparse::cpu
