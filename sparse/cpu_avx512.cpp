#include "sparse/cpu_avx512.h"

#include <algorithm>

#include "base/error.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12's AVX-512 intrinsics fill "undefined" lanes from an uninitialised variable and then warn about it
// (GCC bug 105593, fixed in 13); nothing here reads such lanes.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#include <omp.h>

#define PT_AVX512 __attribute__((target("avx512f,bmi2,popcnt")))

namespace pt::sparse::cpu {

namespace {

constexpr int64_t kLanes = 16;
constexpr int kDenseRows = 6;  // 6 rows × 4 tokens = 24 accumulators, + 4 token chunks + 1 weight chunk of 32 zmm

PT_AVX512 inline float sum_lanes(__m512 v) { return _mm512_reduce_add_ps(v); }

// Rows o0 .. o0+R of W against the T tokens of one token block (xb: [chunks][kDenseTokenBlock][16], zero-padded).
template <int R, int T>
PT_AVX512 void dense_block(const float* w, int64_t in, const float* xb, float* y, int64_t out, const float* bias,
                           int64_t o0, int64_t t0) {
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  const float* wr = w + o0 * in;
  const int64_t full = in / kLanes * kLanes;
  for (int64_t c = 0; c < full; c += kLanes) {
    __m512 xv[T];
    for (int t = 0; t < T; ++t) xv[t] = _mm512_loadu_ps(xb + c * kDenseTokenBlock + t * kLanes);
    for (int r = 0; r < R; ++r) {
      const __m512 wv = _mm512_loadu_ps(wr + r * in + c);
      for (int t = 0; t < T; ++t) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
  if (full < in) {  // the last partial chunk: W's row ends there (masked load); x is zero-padded
    const __mmask16 m = __mmask16(_bzhi_u32(0xFFFF, unsigned(in - full)));
    __m512 xv[T];
    for (int t = 0; t < T; ++t) xv[t] = _mm512_loadu_ps(xb + full * kDenseTokenBlock + t * kLanes);
    for (int r = 0; r < R; ++r) {
      const __m512 wv = _mm512_maskz_loadu_ps(m, wr + r * in + full);
      for (int t = 0; t < T; ++t) acc[r][t] = _mm512_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) {
      const float s = sum_lanes(acc[r][t]);
      y[(t0 + t) * out + o0 + r] = bias ? s + bias[o0 + r] : s;
    }
}

template <int T>
PT_AVX512 void dense_rows_block(const float* w, int64_t in, const float* xb, float* y, int64_t out, const float* bias,
                                int64_t o0, int rows, int64_t t0) {
  switch (rows) {
    case 1: dense_block<1, T>(w, in, xb, y, out, bias, o0, t0); break;
    case 2: dense_block<2, T>(w, in, xb, y, out, bias, o0, t0); break;
    case 3: dense_block<3, T>(w, in, xb, y, out, bias, o0, t0); break;
    case 4: dense_block<4, T>(w, in, xb, y, out, bias, o0, t0); break;
    case 5: dense_block<5, T>(w, in, xb, y, out, bias, o0, t0); break;
    default: dense_block<kDenseRows, T>(w, in, xb, y, out, bias, o0, t0); break;
  }
}

int64_t padded_in(int64_t in) { return (in + kLanes - 1) / kLanes * kLanes; }

}  // namespace

int64_t dense_rows_scratch_floats(int64_t tokens, int64_t in) {
  const int64_t blocks = (tokens + kDenseTokenBlock - 1) / kDenseTokenBlock;
  return blocks * padded_in(in) * kDenseTokenBlock;
}

PT_AVX512 void dense_rows_avx512(const float* x, const float* w, const float* bias, float* y, int64_t tokens,
                                 int64_t in, int64_t out, float* scratch, bool parallel) {
  const int64_t in16 = padded_in(in), blocks = (tokens + kDenseTokenBlock - 1) / kDenseTokenBlock;
  const int64_t row_blocks = (out + kDenseRows - 1) / kDenseRows;
#pragma omp parallel if (parallel)
  {
    // Token t's inputs c .. c+15 go to scratch[block][c / 16][t % 4][0 .. 16) (zeros past `in` and past the
    // last token), so a block's 4 token chunks at c are one contiguous 256 bytes.
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      float* xb = scratch + b * in16 * kDenseTokenBlock;
      for (int j = 0; j < kDenseTokenBlock; ++j) {
        const int64_t t = b * kDenseTokenBlock + j;
        for (int64_t c = 0; c < in16; ++c)
          xb[c / kLanes * kLanes * kDenseTokenBlock + j * kLanes + c % kLanes] =
              t < tokens && c < in ? x[t * in + c] : 0.0f;
      }
    }
#pragma omp for schedule(static)
    for (int64_t rb = 0; rb < row_blocks; ++rb) {
      const int64_t o0 = rb * kDenseRows;
      const int rows = int(std::min<int64_t>(kDenseRows, out - o0));
      for (int64_t b = 0; b < blocks; ++b) {
        const float* xb = scratch + b * in16 * kDenseTokenBlock;
        const int64_t t0 = b * kDenseTokenBlock;
        switch (std::min<int64_t>(kDenseTokenBlock, tokens - t0)) {
          case 1: dense_rows_block<1>(w, in, xb, y, out, bias, o0, rows, t0); break;
          case 2: dense_rows_block<2>(w, in, xb, y, out, bias, o0, rows, t0); break;
          case 3: dense_rows_block<3>(w, in, xb, y, out, bias, o0, rows, t0); break;
          default: dense_rows_block<4>(w, in, xb, y, out, bias, o0, rows, t0); break;
        }
      }
    }
  }
}

PT_AVX512 void bitmap_token_avx512(const uint32_t* words, const int32_t* offsets, const float* values,
                                   int64_t words_per_row, const float* x, const float* bias, float* y, int64_t in,
                                   int64_t out, bool parallel) {
  const int64_t full = in / 32;  // words with all 32 inputs; a last partial word has its inputs masked
  const uint32_t last_inputs = _bzhi_u32(0xFFFFFFFFu, unsigned(in % 32));
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t o = 0; o < out; ++o) {
    const uint32_t* row = words + o * words_per_row;
    const float* v = values + offsets[o * words_per_row];
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int64_t wi = 0; wi < full; ++wi) {
      const uint32_t bits = row[wi];
      const __mmask16 lo = __mmask16(bits), hi = __mmask16(bits >> 16);
      const __m512 v0 = _mm512_maskz_expandloadu_ps(lo, v);
      v += __builtin_popcount(lo);
      const __m512 v1 = _mm512_maskz_expandloadu_ps(hi, v);
      v += __builtin_popcount(hi);
      acc0 = _mm512_fmadd_ps(v0, _mm512_loadu_ps(x + wi * 32), acc0);
      acc1 = _mm512_fmadd_ps(v1, _mm512_loadu_ps(x + wi * 32 + kLanes), acc1);
    }
    if (full < words_per_row) {
      const uint32_t bits = row[full];
      const __mmask16 lo = __mmask16(bits), hi = __mmask16(bits >> 16);
      const __m512 v0 = _mm512_maskz_expandloadu_ps(lo, v);
      const __m512 v1 = _mm512_maskz_expandloadu_ps(hi, v + __builtin_popcount(lo));
      acc0 = _mm512_fmadd_ps(v0, _mm512_maskz_loadu_ps(__mmask16(last_inputs), x + full * 32), acc0);
      acc1 = _mm512_fmadd_ps(v1, _mm512_maskz_loadu_ps(__mmask16(last_inputs >> 16), x + full * 32 + kLanes), acc1);
    }
    const float s = sum_lanes(_mm512_add_ps(acc0, acc1));
    y[o] = bias ? s + bias[o] : s;
  }
}

namespace {

// The 16 input columns (0..31 within the word's 32 inputs) of one 2:4 metadata word's 16 values: value 2g+s of
// the word is at column 4g + ((m >> (4g + 2s)) & 3).
PT_AVX512 inline __m512i two_four_columns(uint32_t m) {
  const __m512i shifts = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i base = _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
  const __m512i pos = _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32(int(m)), shifts), _mm512_set1_epi32(3));
  return _mm512_add_epi32(base, pos);
}

// x's inputs at the 16 columns of metadata word m, from the 32 inputs at xw (masks: which of them exist).
PT_AVX512 inline __m512 two_four_inputs(const float* xw, uint32_t m, __mmask16 lo = 0xFFFF, __mmask16 hi = 0xFFFF) {
  return _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(lo, xw), two_four_columns(m),
                                _mm512_maskz_loadu_ps(hi, xw + kLanes));
}

}  // namespace

PT_AVX512 void two_four_token_avx512(const uint32_t* meta, const float* values, const float* x, const float* bias,
                                     float* y, int64_t in, int64_t out, bool parallel) {
  const int64_t groups = in / 4, wpr = (in + 31) / 32, full = groups / 8;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t o = 0; o < out; ++o) {
    const float* v = values + o * (in / 2);
    const uint32_t* m = meta + o * wpr;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t wi = 0;
    for (; wi + 1 < full; wi += 2) {
      acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(v + wi * kLanes), two_four_inputs(x + wi * 32, m[wi]), acc0);
      acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(v + wi * kLanes + kLanes), two_four_inputs(x + wi * 32 + 32, m[wi + 1]),
                             acc1);
    }
    if (wi < full) {
      acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(v + wi * kLanes), two_four_inputs(x + wi * 32, m[wi]), acc0);
      ++wi;
    }
    if (wi < wpr) {  // a last word of fewer than 8 groups: only its groups' values and inputs exist
      const unsigned g = unsigned(groups - wi * 8);
      const uint32_t inputs = _bzhi_u32(0xFFFFFFFFu, 4 * g);
      const __m512 xs = two_four_inputs(x + wi * 32, m[wi], __mmask16(inputs), __mmask16(inputs >> 16));
      acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(__mmask16(_bzhi_u32(0xFFFF, 2 * g)), v + wi * kLanes), xs, acc1);
    }
    const float s = sum_lanes(_mm512_add_ps(acc0, acc1));
    y[o] = bias ? s + bias[o] : s;
  }
}

}  // namespace pt::sparse::cpu

#else  // not x86-64: avx512_supported() is false, so these are never called

namespace pt::sparse::cpu {

int64_t dense_rows_scratch_floats(int64_t, int64_t) { return 0; }
void dense_rows_avx512(const float*, const float*, const float*, float*, int64_t, int64_t, int64_t, float*, bool) {
  PT_FAIL("dense_rows_avx512: not built for this CPU");
}
void bitmap_token_avx512(const uint32_t*, const int32_t*, const float*, int64_t, const float*, const float*, float*,
                         int64_t, int64_t, bool) {
  PT_FAIL("bitmap_token_avx512: not built for this CPU");
}
void two_four_token_avx512(const uint32_t*, const float*, const float*, const float*, float*, int64_t, int64_t, bool) {
  PT_FAIL("two_four_token_avx512: not built for this CPU");
}

}  // namespace pt::sparse::cpu

#endif
