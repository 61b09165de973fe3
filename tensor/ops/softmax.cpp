// Softmax and log-softmax over the last dim, and their backwards: validation + dispatch and the CPU
// reference (ops/softmax.cu is the CUDA side). The CPU works row by row: exponentials in the input type (f32:
// exp_rows' vectorised ones), sums in double.
//
// Causal masking (softmax only): the last two dims are (Tq, Tk) and query i sees keys j <= i + (Tk - Tq),
// i.e. the queries are the last Tq positions of a Tk-long sequence (decoding with a KV cache). Masked
// probabilities are exactly 0; a query that sees no key at all (Tq > Tk) gets an all-zero row instead
// of 0/0.
#include <algorithm>
#include <cmath>
#include <limits>

#include "tensor/ops.h"
#include "tensor/ops/checks.h"
#include "tensor/ops/cpu_loops.h"
#include "tensor/ops/dispatch.h"
#include "tensor/ops/softmax_row.h"
#if PT_CUDA
#include "tensor/ops/cuda_ops.h"
#endif

namespace pt {
namespace {

void check_softmax_input(const char* op, const Tensor& x) {
  checks::defined(op, x, "x");
  checks::float_dtype(op, x);
  PT_CHECK(x.dim() >= 1, op, ": x must have at least 1 dim, got ", x.describe());
}

void check_backward_inputs(const char* op, const Tensor& y, const Tensor& grad_y) {
  check_softmax_input(op, y);
  checks::defined(op, grad_y, "grad_y");
  checks::same_device(op, {&y, &grad_y});
  checks::same_dtype(op, y, grad_y);
  PT_CHECK(y.shape() == grad_y.shape(), op, ": grad_y ", grad_y.describe(), " does not match y ", y.describe());
}

// Number of visible keys of row r (all n when not causal).
inline int64_t visible_keys(int64_t r, int64_t n, int64_t tq, bool causal) {
  if (!causal) return n;
  const int64_t i = r % tq;
  return std::clamp<int64_t>(i + (n - tq) + 1, 0, n);
}

template <class T>
void cpu_softmax_rows(const T* x, T* y, int64_t rows, int64_t n, int64_t tq, bool causal, bool log_out) {
  // Exponentials in T (float exp is several times cheaper than double), sums in double; rows in parallel.
#pragma omp parallel for schedule(static) if (rows * n >= cpu::kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    const int64_t valid = visible_keys(r, n, tq, causal);
    if (log_out) {
      const double lse = cpu::log_sum_exp_row(xr, valid);
      for (int64_t j = 0; j < n; ++j) yr[j] = T(double(xr[j]) - lse);
    } else {
      cpu::softmax_row(xr, yr, n, valid);  // one exp per element (same values and rounding as two)
    }
  }
}

template <class T>
void cpu_softmax_backward_rows(const T* y, const T* g, T* dx, int64_t rows, int64_t n, bool log_out) {
#pragma omp parallel for schedule(static) if (rows * n >= cpu::kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    const T* yr = y + r * n;
    const T* gr = g + r * n;
    T* dr = dx + r * n;
    double acc = 0;  // softmax: sum(g*y); log-softmax: sum(g)
    for (int64_t j = 0; j < n; ++j) acc += log_out ? double(gr[j]) : double(gr[j]) * double(yr[j]);
    for (int64_t j = 0; j < n; ++j)
      dr[j] = log_out ? T(double(gr[j]) - double(std::exp(yr[j])) * acc) : T(double(yr[j]) * (double(gr[j]) - acc));
  }
}

Tensor cpu_forward(const char* op, const Tensor& xc, bool causal, bool log_out) {
  Tensor y = Tensor::empty(xc.shape(), xc.dtype(), Device::cpu);
  const int64_t n = xc.size(-1), rows = xc.numel() / n;
  const int64_t tq = causal ? xc.size(-2) : 1;
  dispatch_cpu_float(xc.dtype(), op, [&]<class T>() {
    cpu_softmax_rows<T>(xc.data<T>(), y.data<T>(), rows, n, tq, causal, log_out);
  });
  return y;
}

Tensor cpu_backward(const char* op, const Tensor& yc, const Tensor& gc, bool log_out) {
  Tensor dx = Tensor::empty(yc.shape(), yc.dtype(), Device::cpu);
  const int64_t n = yc.size(-1), rows = yc.numel() / n;
  dispatch_cpu_float(yc.dtype(), op, [&]<class T>() {
    cpu_softmax_backward_rows<T>(yc.data<T>(), gc.data<T>(), dx.data<T>(), rows, n, log_out);
  });
  return dx;
}

}  // namespace

Tensor softmax(const Tensor& x, bool causal) {
  check_softmax_input("softmax", x);
  PT_CHECK(!causal || x.dim() >= 2, "softmax: causal=true needs x with dims (..., Tq, Tk), got ", x.describe());
  if (x.numel() == 0) return Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor xc = x.contiguous();
  PT_DISPATCH_CUDA(x, return cuda_ops::softmax(xc, causal))
  return cpu_forward("softmax", xc, causal, false);
}

Tensor log_softmax(const Tensor& x) {
  check_softmax_input("log_softmax", x);
  if (x.numel() == 0) return Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor xc = x.contiguous();
  PT_DISPATCH_CUDA(x, return cuda_ops::log_softmax(xc))
  return cpu_forward("log_softmax", xc, false, true);
}

Tensor softmax_backward(const Tensor& y, const Tensor& grad_y) {
  check_backward_inputs("softmax_backward", y, grad_y);
  if (y.numel() == 0) return Tensor::empty(y.shape(), y.dtype(), y.device());
  Tensor yc = y.contiguous(), gc = grad_y.contiguous();
  PT_DISPATCH_CUDA(y, return cuda_ops::softmax_backward(yc, gc))
  return cpu_backward("softmax_backward", yc, gc, false);
}

Tensor log_softmax_backward(const Tensor& y, const Tensor& grad_y) {
  check_backward_inputs("log_softmax_backward", y, grad_y);
  if (y.numel() == 0) return Tensor::empty(y.shape(), y.dtype(), y.device());
  Tensor yc = y.contiguous(), gc = grad_y.contiguous();
  PT_DISPATCH_CUDA(y, return cuda_ops::log_softmax_backward(yc, gc))
  return cpu_backward("log_softmax_backward", yc, gc, true);
}

}  // namespace pt
