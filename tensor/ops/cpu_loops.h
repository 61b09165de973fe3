// CPU loop helpers: walk N-d tensors of one shape with per-operand strides (stride 0 = broadcast), and split
// loops over OpenMP's threads. Every split here gives each thread a disjoint part of the output and never changes
// the order of any sum, so results are the same bits for every number of threads.
#pragma once
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace pt::cpu {

// Loops go parallel (OpenMP) only above this many elements: below it, waking threads costs more than
// the work, and far more when the cores are busy.
inline constexpr int64_t kParallelMinElements = int64_t(1) << 16;

// Threads for a loop touching `work` elements: 1 when small or already inside a parallel region.
inline int loop_threads(int64_t work) {
  if (work < kParallelMinElements || omp_in_parallel()) return 1;
  return omp_get_max_threads();
}

// f(begin, end) over [0, n) in one contiguous piece per thread (piece edges at multiples of `align`), in
// parallel when n items of `work_per_item` elements each are worth it. f must not throw.
template <class F>
void parallel_ranges(int64_t n, int64_t work_per_item, F&& f, int64_t align = 16) {
  if (n <= 0) return;
  const int threads = int(std::min<int64_t>(loop_threads(n * std::max<int64_t>(work_per_item, 1)),
                                            (n + align - 1) / align));
  if (threads <= 1) {
    f(int64_t(0), n);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t per = ((n + nt - 1) / nt + align - 1) / align * align;
    const int64_t begin = std::min(n, t * per), end = std::min(n, begin + per);
    if (begin < end) f(begin, end);
  }
}

// Calls f(i0, i1, ..., iN-1) with element offsets (not bytes) into each operand, in row-major order of `shape`
// within each row of the innermost dim. `strides[k]` are operand k's strides already expanded to `shape`.
// Operand 0 is the one written: rows go to threads in parallel unless it has a broadcast (stride-0) dim, where
// two rows would write the same element.
template <size_t N, class F>
void for_each_offset(const Shape& shape, const std::array<const Strides*, N>& strides,
                     const std::array<int64_t, N>& base, F&& f) {
  const int64_t rank = int64_t(shape.size());
  const int64_t n = shape_numel(shape);
  if (n == 0) return;
  const int64_t inner = rank ? shape[size_t(rank - 1)] : 1, rows = n / inner;
  std::array<int64_t, N> step{};
  bool unit = true;  // every operand walks its inner dim with stride 1: a loop the compiler can vectorise
  for (size_t k = 0; k < N; ++k) {
    step[k] = rank ? (*strides[k])[size_t(rank - 1)] : 0;
    unit = unit && (step[k] == 1 || inner == 1);
  }
  auto run_rows = [&](int64_t r0, int64_t r1) {
    // Multi-index of row r0 over dims 0 .. rank-2, and the operands' offsets there.
    std::vector<int64_t> idx(size_t(std::max<int64_t>(rank - 1, 0)), 0);
    std::array<int64_t, N> off = base;
    for (int64_t d = rank - 2, rem = r0; d >= 0; --d) {
      idx[size_t(d)] = rem % shape[size_t(d)];
      rem /= shape[size_t(d)];
      for (size_t k = 0; k < N; ++k) off[k] += idx[size_t(d)] * (*strides[k])[size_t(d)];
    }
    for (int64_t r = r0; r < r1; ++r) {
      if (unit) {
        [&]<size_t... K>(std::index_sequence<K...>) {
          for (int64_t i = 0; i < inner; ++i) f((off[K] + i)...);
        }(std::make_index_sequence<N>{});
      } else {
        std::array<int64_t, N> o = off;
        for (int64_t i = 0; i < inner; ++i) {
          std::apply(f, o);
          for (size_t k = 0; k < N; ++k) o[k] += step[k];
        }
      }
      // Advance the outer index (carry through dims rank-2 .. 0).
      for (int64_t d = rank - 2; d >= 0; --d) {
        ++idx[size_t(d)];
        for (size_t k = 0; k < N; ++k) off[k] += (*strides[k])[size_t(d)];
        if (idx[size_t(d)] < shape[size_t(d)]) break;
        for (size_t k = 0; k < N; ++k) off[k] -= (*strides[k])[size_t(d)] * shape[size_t(d)];
        idx[size_t(d)] = 0;
      }
    }
  };
  bool output_disjoint = true;
  for (int64_t d = 0; d < rank; ++d)
    output_disjoint = output_disjoint && ((*strides[0])[size_t(d)] != 0 || shape[size_t(d)] == 1);
  if (output_disjoint) parallel_ranges(rows, inner, run_rows, 1);
  else run_rows(0, rows);
}

// Strides of t as seen through a broadcast to `shape` (stride 0 on broadcast dims).
Strides broadcast_strides(const Tensor& t, const Shape& shape);

// Contiguous, same-shape check for the fast path.
inline bool all_contiguous(std::initializer_list<const Tensor*> ts) {
  for (auto* t : ts) if (!t->is_contiguous()) return false;
  return true;
}

}  // namespace pt::cpu
