// The CPU forward the sparse formats share: y[t, o] = b[o] + Σ over row o's kept weights (column c, value v) of
// v · x[t, c], for x [tokens, in] and y [tokens, out], both row-major.
//
// Dense BLAS wins against a loop that walks the sparse indices once per token because it loads each weight once
// for many tokens and keeps the partial sums in registers. These kernels do the same: tokens are taken in
// blocks of up to 16; a block is transposed once into xt [in, block], so the block's inputs at column c are one
// contiguous run; every output row then walks its kept weights once per block and multiplies each weight into
// all of the block's tokens at once, with SIMD accumulators that stay in registers. Rows run in parallel
// (OpenMP). A single token (decode) needs no transpose: its row of x is xt already.
//
// A format supplies only its row walk: walk(o, add) calls add(c, w) for each of row o's stored weights, w at input
// column c, in column order (everything inlines into one loop per format). Products accumulate in T (f32 or
// f64), in two (four for one token) interleaved sums.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "tensor/tensor.h"

namespace pt::sparse::cpu {

// SSE2 (16-byte vectors) is every x86-64; a build for a CPU with AVX (-march=...) gets 32-byte vectors.
#if defined(__AVX__)
inline constexpr int kVectorBytes = 32;
#else
inline constexpr int kVectorBytes = 16;
#endif
inline constexpr int kMaxTokenBlock = 16;

template <class T, int Bytes>
struct Simd {
  typedef T type __attribute__((vector_size(Bytes)));
};

// The partial sums of one output row for a block of TB tokens (TB = 4, 8 or 16), in two sets that take turns,
// so consecutive weights do not wait on each other's adds.
template <class T, int TB>
struct RowSums {
  static constexpr int kBytes = std::min<int>(TB * int(sizeof(T)), kVectorBytes);
  static constexpr int kLanes = kBytes / int(sizeof(T)), kVectors = TB / kLanes;
  using Vec = typename Simd<T, kBytes>::type;
  Vec acc[kVectors], other[kVectors];

  explicit RowSums(T bias) {
#pragma GCC unroll 16
    for (int v = 0; v < kVectors; ++v) {
      acc[v] = Vec{} + bias;
      other[v] = Vec{};
    }
  }
  // The weight w at input column c meets the block's tokens at xt[c·TB .. c·TB + TB) (xt: [in, TB]).
  void add(int64_t c, T w, const T* xt) {
    const T* xc = xt + c * TB;
#pragma GCC unroll 16
    for (int v = 0; v < kVectors; ++v) {
      Vec xv;
      __builtin_memcpy(&xv, xc + v * kLanes, sizeof xv);
      const Vec sum = other[v] + w * xv;
      other[v] = acc[v];
      acc[v] = sum;
    }
  }
  // y[j·stride] = the sum of token j, for the block's first `valid` tokens.
  void store(T* y, int64_t stride, int valid) const {
    Vec total[kVectors];
    for (int v = 0; v < kVectors; ++v) total[v] = acc[v] + other[v];
    T lanes[TB];
    __builtin_memcpy(lanes, total, sizeof lanes);
    for (int j = 0; j < valid; ++j) y[j * stride] = lanes[j];
  }
};

// One token: xt is x's row; four scalar sums take turns.
template <class T>
struct RowSums<T, 1> {
  T a0, a1 = 0, a2 = 0, a3 = 0;
  explicit RowSums(T bias) : a0(bias) {}
  void add(int64_t c, T w, const T* x) {
    const T sum = a3 + w * x[c];
    a3 = a2;
    a2 = a1;
    a1 = a0;
    a0 = sum;
  }
  void store(T* y, int64_t, int) const { *y = (a0 + a1) + (a2 + a3); }
};

// One block of TB tokens starting at t0 (`valid` of them real); called by every thread of a parallel region.
template <int TB, class T, class Walk>
void forward_token_block(const T* x, T* y, const T* bias, int64_t t0, int valid, int64_t in, int64_t out,
                         T* xt_scratch, const Walk& walk) {
  const T* xt = x + t0 * in;
  if constexpr (TB > 1) {
#pragma omp for schedule(static)
    for (int64_t i = 0; i < in; ++i)
      for (int j = 0; j < TB; ++j) xt_scratch[i * TB + j] = j < valid ? x[(t0 + j) * in + i] : T(0);
    xt = xt_scratch;  // the loop's barrier has published it to every thread
  }
#pragma omp for schedule(dynamic, 16)
  for (int64_t o = 0; o < out; ++o) {
    RowSums<T, TB> sums(bias ? bias[o] : T(0));
    walk(o, [&](int64_t c, T w) { sums.add(c, w, xt); });
    sums.store(y + t0 * out + o, out, valid);
  }
  // The loop's barrier keeps xt alive until every row of this block is done.
}

// Below ~2^18 dense-equivalent multiply-adds a call takes microseconds: one thread, no barriers to wait at (a
// second thread that is descheduled would hold the first at every block's barrier for a time slice).
inline bool worth_threads(int64_t multiply_adds) { return multiply_adds >= (int64_t(1) << 18); }

template <class T, class Walk>
void sparse_rows_forward(const T* x, T* y, const T* bias, int64_t tokens, int64_t in, int64_t out, const Walk& walk) {
  // From the caching allocator: a fresh 128 KiB+ block per call would be a new mapping, zeroed page by page.
  const Tensor xt_block = Tensor::empty({tokens > 1 ? in * kMaxTokenBlock : 0}, dtype_of<T>::value);
  T* xt = xt_block.data<T>();
#pragma omp parallel if (worth_threads(tokens * in * out))
  for (int64_t t0 = 0; t0 < tokens;) {
    // The smallest block that holds what is left (at most 16): 17 tokens are 16 + 1, 7 tokens one padded 8.
    const int64_t left = tokens - t0;
    const int tb = left >= 16 ? 16 : left > 4 ? (left > 8 ? 16 : 8) : left > 1 ? 4 : 1;
    const int valid = int(std::min<int64_t>(left, tb));
    switch (tb) {
      case 1: forward_token_block<1>(x, y, bias, t0, valid, in, out, xt, walk); break;
      case 4: forward_token_block<4>(x, y, bias, t0, valid, in, out, xt, walk); break;
      case 8: forward_token_block<8>(x, y, bias, t0, valid, in, out, xt, walk); break;
      default: forward_token_block<16>(x, y, bias, t0, valid, in, out, xt, walk); break;
    }
    t0 += valid;
  }
}

}  // namespace pt::sparse::cpu
