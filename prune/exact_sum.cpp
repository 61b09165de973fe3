// The int64 fixed-point sum of calibration terms: rounding each term onto its own grid, exact shifts between grids,
// modular integer addition, and the overflow check before the sum is read.
#include "prune/exact_sum.h"

#include <algorithm>
#include <atomic>
#include <cmath>

namespace pt::prune {

namespace {

// v · 2^shift modulo 2^64 (a shift of 64 or more leaves 0 modulo 2^64: the overflow check refuses such a sum).
uint64_t shifted(uint64_t v, int shift) { return shift >= 64 ? 0 : v << shift; }

}  // namespace

StatisticsSum parse_statistics_sum(const std::string& name) {
  if (name == "running") return StatisticsSum::running;
  if (name == "exact") return StatisticsSum::exact;
  PT_FAIL("unknown statistics_sum '", name, "' (allowed: running, exact)");
}

const char* statistics_sum_name(StatisticsSum s) { return s == StatisticsSum::exact ? "exact" : "running"; }

ExactSum::ExactSum(int64_t rows, int64_t cols) {
  PT_CHECK(rows > 0 && cols > 0, "ExactSum: shape [", rows, ", ", cols, "] must be positive");
  units_ = Tensor::zeros({rows, cols}, DType::i64, Device::cpu);
}

void ExactSum::begin_term(double bound, const std::string& what) {
  PT_CHECK(defined(), "ExactSum::begin_term: the sum has no shape (construct it with ExactSum(rows, cols))");
  PT_CHECK(std::isfinite(bound) && bound >= 0, what, ": a calibration window's statistics are not finite (bound ",
           bound, "); its activations hold inf or NaN");
  term_zero_ = bound == 0;
  if (term_zero_) return;
  int k = 0;
  std::frexp(bound, &k);  // bound < 2^k
  term_grid_ = k + 1 - kTermBits;
  if (term_grid_ < grid_) shift_to(term_grid_);
  top_ = std::max(top_, term_grid_);
  ++terms_;
}

template <class T>
void ExactSum::add_values(const T* values, int64_t ld, int64_t rows, int64_t cols, int64_t row0, int64_t col0) {
  PT_CHECK(defined() && row0 >= 0 && col0 >= 0 && row0 + rows <= this->rows() && col0 + cols <= this->cols(),
           "ExactSum::add: block [", row0, ":", row0 + rows, ", ", col0, ":", col0 + cols, "] outside the sum ",
           units_.describe());
  if (term_zero_) return;
  const double scale = std::ldexp(1.0, -term_grid_);
  const double limit = std::ldexp(1.0, kTermBits);  // |value| <= 2·bound < 2^(kTermBits + grid)
  const int shift = term_grid_ - grid_;
  uint64_t* u = reinterpret_cast<uint64_t*>(units_.data<int64_t>());
  const int64_t ldu = this->cols();
  std::atomic<bool> outside{false};
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    uint64_t* dst = u + (row0 + r) * ldu + col0;
    const T* src = values + r * ld;
    for (int64_t c = 0; c < cols; ++c) {
      const double d = double(src[c]) * scale;
      if (!(std::abs(d) <= limit)) {
        outside.store(true, std::memory_order_relaxed);
        continue;
      }
      dst[c] += shifted(uint64_t(std::llrint(d)), shift);
    }
  }
  PT_CHECK(!outside.load(), "ExactSum::add: a value of the term is not finite or exceeds twice the term's bound");
}

void ExactSum::add(const float* values, int64_t ld, int64_t rows, int64_t cols, int64_t row0, int64_t col0) {
  add_values(values, ld, rows, cols, row0, col0);
}
void ExactSum::add(const double* values, int64_t ld, int64_t rows, int64_t cols, int64_t row0, int64_t col0) {
  add_values(values, ld, rows, cols, row0, col0);
}

void ExactSum::shift_to(int grid) {
  PT_CHECK(grid <= grid_, "ExactSum::shift_to: grid 2^", grid, " is coarser than the sum's 2^", grid_);
  if (grid_ != kNoGrid && grid < grid_) {
    const int shift = grid_ - grid;
    uint64_t* u = reinterpret_cast<uint64_t*>(units_.data<int64_t>());
    const int64_t n = units_.numel();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) u[i] = shifted(u[i], shift);
  }
  grid_ = grid;
}

void ExactSum::set_scale(int grid, int top, int64_t terms) {
  grid_ = grid;
  top_ = top;
  terms_ = terms;
}

void ExactSum::merge(const ExactSum& other) {
  PT_CHECK(defined() && other.defined() && other.rows() == rows() && other.cols() == cols(), "ExactSum::merge: ",
           other.defined() ? other.units_.describe() : std::string("undefined"), " does not match ",
           defined() ? units_.describe() : std::string("undefined"));
  if (other.terms_ == 0) return;
  const int grid = std::min(grid_, other.grid_);
  shift_to(grid);
  const int shift = other.grid_ - grid;
  uint64_t* u = reinterpret_cast<uint64_t*>(units_.data<int64_t>());
  const uint64_t* o = reinterpret_cast<const uint64_t*>(other.units_.data<int64_t>());
  const int64_t n = units_.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) u[i] += shifted(o[i], shift);
  top_ = std::max(top_, other.top_);
  terms_ += other.terms_;
}

Tensor ExactSum::to_f32(double scale, Device device) const {
  PT_CHECK(defined(), "ExactSum::to_f32: the sum has no shape");
  Tensor out = Tensor::zeros(units_.shape(), DType::f32, Device::cpu);
  if (terms_ > 0) {
    // |sum| <= terms · 2^(kTermBits + top - grid) units must stay below 2^63 for the int64 to hold it.
    const int spread = top_ - grid_;
    PT_CHECK(std::ldexp(double(terms_), kTermBits + spread) < 0x1p63, "[prune] statistics_sum = exact: the ",
             terms_, " calibration windows' statistics differ in scale by 2^", spread,
             ", more than the 64-bit fixed-point sum holds (2^", 62 - kTermBits - int(std::ceil(std::log2(double(terms_)))),
             " for this many windows); use statistics_sum = running");
    const double unit = std::ldexp(scale, grid_);
    const int64_t* u = units_.data<int64_t>();
    float* o = out.data<float>();
    const int64_t n = units_.numel();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) o[i] = float(double(u[i]) * unit);
  }
  return out.to(device);
}

}  // namespace pt::prune
