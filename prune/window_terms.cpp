// Per-window terms of the exact statistics sum: column sums of squares in double and Gram blocks by GEMM.
#include "prune/window_terms.h"

#include <algorithm>
#include <vector>

#include "tensor/ops.h"

namespace pt::prune::detail {

namespace {

// sum_t x_tj² for every column j of a host f32 [tokens, cols] matrix, each in double with the tokens in order.
std::vector<double> column_square_norms(const Tensor& host) {
  const int64_t t = host.size(0), c = host.size(1);
  const float* x = host.data<float>();
  std::vector<double> out(size_t(c), 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t j0 = 0; j0 < c; j0 += 64) {
    const int64_t j1 = std::min(c, j0 + 64);
    for (int64_t r = 0; r < t; ++r)
      for (int64_t j = j0; j < j1; ++j) out[size_t(j)] += double(x[r * c + j]) * double(x[r * c + j]);
  }
  return out;
}

void check_window(const char* fn, const ExactSum& sum, const Tensor& x, int64_t rows) {
  PT_CHECK(x.defined() && x.dim() == 2 && x.dtype() == DType::f32 && x.is_contiguous(), fn, ": x ",
           x.defined() ? x.describe() : std::string("undefined"), " must be a contiguous f32 [tokens, cols] matrix");
  PT_CHECK(sum.rows() == rows && sum.cols() == x.size(1), fn, ": the sum [", sum.rows(), ", ", sum.cols(),
           "] does not match the window ", x.describe());
}

}  // namespace

void add_window_gram(ExactSum& sum, const Tensor& x) {
  check_window("add_window_gram", sum, x, x.size(1));
  const int64_t c = x.size(1);
  const std::vector<double> norms = column_square_norms(x.to(Device::cpu));
  sum.begin_term(*std::max_element(norms.begin(), norms.end()), "statistics_sum = exact (Hessian)");
  for (int64_t j0 = 0; j0 < c; j0 += kGramBlock) {
    const int64_t b = std::min(kGramBlock, c - j0), rows = j0 + b;
    // Rows 0 .. j0+b of columns j0 .. j0+b: the block column's part on and above the diagonal.
    const Tensor g = matmul(x.narrow(1, 0, rows), x.narrow(1, j0, b), /*trans_a=*/true, /*trans_b=*/false)
                         .to(Device::cpu)
                         .contiguous();
    sum.add(g.data<float>(), b, rows, b, 0, j0);
  }
}

void add_window_square_norms(ExactSum& sum, const Tensor& x) {
  check_window("add_window_square_norms", sum, x, 1);
  const std::vector<double> norms = column_square_norms(x.to(Device::cpu));
  sum.begin_term(*std::max_element(norms.begin(), norms.end()), "statistics_sum = exact (Wanda)");
  sum.add(norms.data(), x.size(1), 1, x.size(1), 0, 0);
}

}  // namespace pt::prune::detail
