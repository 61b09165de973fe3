// CPU loop helpers: walk N-d tensors of one shape with per-operand strides (stride 0 = broadcast).
// The contiguous, non-broadcast case takes a flat loop the compiler can vectorise.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace pt::cpu {

// Row loops go parallel (OpenMP) only above this many elements: below it, waking threads costs more than
// the work, and far more when the cores are busy.
inline constexpr int64_t kParallelMinElements = int64_t(1) << 16;

// Calls f(i0, i1, ..., iN-1) with element offsets (not bytes) into each operand, in row-major
// order of `shape`. `strides[k]` are operand k's strides already expanded to `shape`.
template <size_t N, class F>
void for_each_offset(const Shape& shape, const std::array<const Strides*, N>& strides,
                     const std::array<int64_t, N>& base, F&& f) {
  const int64_t rank = int64_t(shape.size());
  const int64_t n = shape_numel(shape);
  if (n == 0) return;
  std::vector<int64_t> idx(rank, 0);
  std::array<int64_t, N> off = base;
  // Innermost dimension as a tight loop.
  const int64_t inner = rank ? shape[rank - 1] : 1;
  std::array<int64_t, N> step{};
  for (size_t k = 0; k < N; ++k) step[k] = rank ? (*strides[k])[rank - 1] : 0;
  for (int64_t done = 0; done < n; done += inner) {
    std::array<int64_t, N> o = off;
    for (int64_t i = 0; i < inner; ++i) {
      std::apply(f, o);
      for (size_t k = 0; k < N; ++k) o[k] += step[k];
    }
    // Advance the outer index (carry through dims rank-2 .. 0).
    for (int64_t d = rank - 2; d >= 0; --d) {
      ++idx[d];
      for (size_t k = 0; k < N; ++k) off[k] += (*strides[k])[d];
      if (idx[d] < shape[d]) break;
      for (size_t k = 0; k < N; ++k) off[k] -= (*strides[k])[d] * shape[d];
      idx[d] = 0;
    }
  }
}

// Strides of t as seen through a broadcast to `shape` (stride 0 on broadcast dims).
Strides broadcast_strides(const Tensor& t, const Shape& shape);

// Contiguous, same-shape check for the fast path.
inline bool all_contiguous(std::initializer_list<const Tensor*> ts) {
  for (auto* t : ts) if (!t->is_contiguous()) return false;
  return true;
}

}  // namespace pt::cpu
