// Cross-entropy with ignore_index, fused log-softmax + NLL: validation + dispatch and the CPU reference
// (ops/cross_entropy.cu is the CUDA side).
//   loss_r = lse_r - logits[r, t_r] for rows with t_r != ignore_index; lse_r = log sum_j exp(logits[r, j])
//   mean: sum_r loss_r / count (0 when count == 0), sum: sum_r loss_r
//   d logits[r, j] = scale * (exp(logits[r, j] - lse_r) - [j == t_r]), scale = grad / count (mean) or grad
// and ignored rows get a zero gradient. The CPU takes exponentials in the input type (f32: exp_rows' vectorised
// ones) and sums in double.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>
#include <type_traits>

#include "tensor/ops.h"
#include "tensor/ops/checks.h"
#include "tensor/ops/cpu_loops.h"
#include "tensor/ops/dispatch.h"
#include "tensor/ops/exp_rows.h"
#include "tensor/ops/softmax_row.h"
#if PT_CUDA
#include "tensor/ops/cuda_ops.h"
#endif

namespace pt {
namespace {

DType stat_dtype(DType logits) { return logits == DType::f64 ? DType::f64 : DType::f32; }

void check_inputs(const char* op, const Tensor& logits, const Tensor& targets) {
  checks::defined(op, logits, "logits");
  checks::defined(op, targets, "targets");
  checks::same_device(op, {&logits, &targets});
  checks::float_dtype(op, logits);
  checks::rank(op, logits, 2, "logits");
  checks::dtype_in(op, targets, {DType::i64});
  checks::rank(op, targets, 1, "targets");
  PT_CHECK(targets.size(0) == logits.size(0), op, ": targets ", targets.describe(), " do not match the rows of logits ",
           logits.describe());
}

void check_target(const char* op, int64_t t, int64_t r, int64_t v, int64_t ignore_index, const Tensor& logits) {
  if (t != ignore_index && (t < 0 || t >= v))
    PT_FAIL(checks::bad_target_message(op, t, r, v, logits.describe(), ignore_index));
}

template <class T, class S>
double cpu_cross_entropy(const T* x, const int64_t* t, S* lse, int64_t n, int64_t v, int64_t ignore_index,
                         int64_t& count, const Tensor& logits) {
  for (int64_t r = 0; r < n; ++r) check_target("cross_entropy", t[r], r, v, ignore_index, logits);
  // Exponentials in T, sums in double; rows in parallel, then the row losses are added in row order so
  // the result does not depend on the number of threads.
  std::vector<double> row_loss(size_t(n), 0.0);
#pragma omp parallel for schedule(static) if (n * v >= cpu::kParallelMinElements)
  for (int64_t r = 0; r < n; ++r) {
    const T* xr = x + r * v;
    const double l = cpu::log_sum_exp_row(xr, v);
    lse[r] = S(l);
    if (t[r] != ignore_index) row_loss[size_t(r)] = l - double(xr[t[r]]);
  }
  double total = 0;
  count = 0;
  for (int64_t r = 0; r < n; ++r) {
    if (t[r] == ignore_index) continue;
    total += row_loss[size_t(r)];
    ++count;
  }
  return total;
}

template <class T, class S>
void cpu_cross_entropy_backward(const T* x, const int64_t* t, const S* lse, T* dx, int64_t n, int64_t v,
                                int64_t ignore_index, double scale) {
#pragma omp parallel for schedule(static) if (n * v >= cpu::kParallelMinElements)
  for (int64_t r = 0; r < n; ++r) {
    const T* xr = x + r * v;
    T* dr = dx + r * v;
    if (t[r] == ignore_index) {
      for (int64_t j = 0; j < v; ++j) dr[j] = T(0);
      continue;
    }
    const double l = double(lse[r]);
    const T lt = T(l), sc = T(scale);
    if constexpr (std::is_same_v<T, float>) cpu::exp_shifted_scaled(xr, dr, v, lt, sc);
    else for (int64_t j = 0; j < v; ++j) dr[j] = sc * std::exp(xr[j] - lt);
    dr[t[r]] -= sc;
  }
}

}  // namespace

CrossEntropyOut cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index, Reduction reduction) {
  check_inputs("cross_entropy", logits, targets);
  Tensor xc = logits.contiguous(), tc = targets.contiguous();
  PT_DISPATCH_CUDA(logits, return cuda_ops::cross_entropy(xc, tc, ignore_index, reduction))
  const int64_t n = logits.size(0), v = logits.size(1);
  CrossEntropyOut out;
  out.lse = Tensor::empty({n}, stat_dtype(logits.dtype()));
  int64_t count = 0;
  double total = 0;
  dispatch_cpu_float(logits.dtype(), "cross_entropy", [&]<class T>() {
    total = cpu_cross_entropy<T, T>(xc.data<T>(), tc.data<int64_t>(), out.lse.data<T>(), n, v, ignore_index, count,
                                    logits);
  });
  const double loss = reduction == Reduction::sum ? total : (count > 0 ? total / double(count) : 0.0);
  out.loss = Tensor::full({}, loss, stat_dtype(logits.dtype()));
  out.count = Tensor::full({}, double(count), DType::i64);
  return out;
}

Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, const CrossEntropyOut& fwd,
                              const Tensor& grad_loss, int64_t ignore_index, Reduction reduction) {
  const char* op = "cross_entropy_backward";
  check_inputs(op, logits, targets);
  checks::defined(op, fwd.lse, "fwd.lse");
  checks::defined(op, fwd.count, "fwd.count");
  checks::defined(op, grad_loss, "grad_loss");
  checks::same_device(op, {&logits, &fwd.lse, &fwd.count, &grad_loss});
  checks::dtype_in(op, fwd.lse, {stat_dtype(logits.dtype())});
  checks::dtype_in(op, fwd.count, {DType::i64});
  PT_CHECK(fwd.lse.numel() == logits.size(0), op, ": fwd.lse ", fwd.lse.describe(), " must have one entry per row of ",
           logits.describe());
  PT_CHECK(fwd.count.numel() == 1, op, ": fwd.count must have one element, got ", fwd.count.describe());
  PT_CHECK(grad_loss.numel() == 1, op, ": grad_loss must have one element, got ", grad_loss.describe());
  checks::float_dtype(op, grad_loss);
  Tensor xc = logits.contiguous(), tc = targets.contiguous();
  const CrossEntropyOut fc{fwd.loss, fwd.lse.contiguous().reshape({-1}), fwd.count.reshape({})};
  PT_DISPATCH_CUDA(logits, return cuda_ops::cross_entropy_backward(xc, tc, fc, grad_loss.reshape({}), ignore_index,
                                                                   reduction))
  const int64_t n = logits.size(0), v = logits.size(1);
  const int64_t* t = tc.data<int64_t>();
  for (int64_t r = 0; r < n; ++r) check_target(op, t[r], r, v, ignore_index, logits);
  const double g = grad_loss.item();
  const int64_t count = int64_t(fc.count.item());
  const double scale = reduction == Reduction::sum ? g : (count > 0 ? g / double(count) : 0.0);
  Tensor dx = Tensor::empty(logits.shape(), logits.dtype());
  dispatch_cpu_float(logits.dtype(), op, [&]<class T>() {
    cpu_cross_entropy_backward<T, T>(xc.data<T>(), t, fc.lse.data<T>(), dx.data<T>(), n, v, ignore_index, scale);
  });
  return dx;
}

}  // namespace pt
