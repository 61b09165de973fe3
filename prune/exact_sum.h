// An order-independent sum of calibration statistics ([prune] statistics_sum = exact): the same bits whatever the
// number of ranks, the split of the windows over them, their order and the thread count.
//
// Each term (one calibration window's contribution, e.g. its Gram matrix XᵀX) is rounded onto a grid of its own,
// 2^e with e = k + 1 - kTermBits where bound < 2^k (bound: the term's largest diagonal element; every value of the
// term is at most 2·bound in magnitude), i.e. to an integer of at most kTermBits bits. The integers are added in
// 64-bit fixed point on the finest grid of any term so far: a term on a coarser grid is shifted left onto it, and
// a finer term shifts the accumulator left (exact: no bit is lost). Integer addition is associative, so the result
// is the exact sum of the rounded terms, in any order and on any split (ranks add their sums with an int64
// all-reduce, prune/calibration_across_ranks.h). Arithmetic is modulo 2^64; the sum is valid when
// terms · 2^(kTermBits + top - grid) < 2^63 (top: the coarsest term grid), checked before it is read: windows
// whose largest diagonal elements differ by more than about 2^(22 - log2 windows) (2^15 for 128) are refused in
// one line.
//
// Precision: a term's grid is at most 2^-38 of its bound, so each value is rounded by at most 2^-39 of that window's
// largest diagonal element; H = (2/n)·sum is then within 2^-39 of (2/n)·Σ_w bound_w (about H's largest diagonal
// element) of the exact sum of the windows' f32 terms, and the one conversion to f32 adds 2^-24 of each entry.
// The f32 running average instead rounds every entry at each of the W updates (up to about W·2^-24 of the entry).
// So every entry above ~2^-15 of the largest diagonal is summed more precisely than in f32; smaller ones keep fewer
// significant bits, an absolute error far below SparseGPT's damping (percdamp: 1 % of the mean diagonal).
//
// Memory: 8 bytes per entry (int64), twice an f32 Hessian; kept on the host whatever the device.
#pragma once
#include <cstdint>
#include <string>

#include "tensor/tensor.h"

namespace pt::prune {

// [prune] statistics_sum: how the calibration statistics are summed over windows (and ranks).
enum class StatisticsSum {
  running,  // the reference SparseGPT's / Wanda's f32 running average: fast; last bits depend on order and split
  exact,    // per-window terms in int64 fixed point (ExactSum): the same bits for any ranks, split, order, threads
};
StatisticsSum parse_statistics_sum(const std::string& name);  // "running" | "exact"
const char* statistics_sum_name(StatisticsSum s);

class ExactSum {
 public:
  static constexpr int kTermBits = 40;
  static constexpr int kNoGrid = 1 << 20;  // grid of a sum without terms (finer than none)

  ExactSum() = default;
  ExactSum(int64_t rows, int64_t cols);  // zero, on the host
  bool defined() const { return units_.defined(); }
  int64_t rows() const { return units_.defined() ? units_.size(0) : 0; }
  int64_t cols() const { return units_.defined() ? units_.size(1) : 0; }

  // Starts a term whose values are all at most 2·bound in magnitude (bound >= 0 and finite, else one line naming
  // `what`). A term with bound 0 adds nothing.
  void begin_term(double bound, const std::string& what);
  // Adds values[r * ld + c] of the current term at [row0 + r, col0 + c] for r < rows, c < cols.
  void add(const float* values, int64_t ld, int64_t rows, int64_t cols, int64_t row0, int64_t col0);
  void add(const double* values, int64_t ld, int64_t rows, int64_t cols, int64_t row0, int64_t col0);
  // Adds `other`'s sum (the same shape) to this one.
  void merge(const ExactSum& other);

  // f32 [rows, cols] on `device`: scale · the sum, rounded once. Throws (one line) when the sum overflowed.
  Tensor to_f32(double scale, Device device) const;

  // For summing across ranks: the scale facts (all-reduced MIN / MAX / SUM), a shift onto a finer grid, and the
  // integer units (int64 [rows, cols] on the host; all-reduced with MPI_SUM) with their new facts.
  int grid() const { return grid_; }
  int top() const { return top_; }
  int64_t terms() const { return terms_; }
  void shift_to(int grid);
  Tensor& units() { return units_; }
  void set_scale(int grid, int top, int64_t terms);

 private:
  template <class T>
  void add_values(const T* values, int64_t ld, int64_t rows, int64_t cols, int64_t row0, int64_t col0);

  Tensor units_;           // i64 [rows, cols]: the sum in units of 2^grid_, modulo 2^64
  int grid_ = kNoGrid;     // the finest term grid so far
  int top_ = -kNoGrid;     // the coarsest term grid so far
  int64_t terms_ = 0;      // terms with a non-zero bound
  int term_grid_ = 0;      // the current term's grid
  bool term_zero_ = true;  // the current term adds nothing
};

}  // namespace pt::prune
