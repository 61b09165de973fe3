// Top-k along a dim and the k-th smallest value over a whole tensor. CPU: std::partial_sort /
// std::nth_element; CUDA: CUB radix sorts (topk.cu). Both devices order the same way: NaN counts as
// larger than every number, and equal values keep ascending index order, so results agree exactly.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "tensor/ops.h"
#include "tensor/ops/checks.h"
#include "tensor/ops/cuda_ops.h"

namespace pt {
namespace {

// Strict weak order on values with NaN above +inf (what a float radix sort does with positive NaN).
template <class T>
bool value_less(T a, T b) {
  if (std::isnan(a)) return false;
  if (std::isnan(b)) return true;
  return a < b;
}

// Rows of length n of a contiguous tensor; writes the first k of each row in sorted order.
template <class T>
void cpu_topk_rows(const Tensor& x, int64_t n, int64_t k, bool largest, const Tensor& values,
                   const Tensor& indices) {
  const T* px = x.data<T>();
  T* pv = values.data<T>();
  int64_t* pi = indices.data<int64_t>();
  const int64_t rows = x.numel() / n;
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = px + r * n;
    std::iota(order.begin(), order.end(), int64_t(0));
    auto before = [&](int64_t i, int64_t j) {
      const bool lt = largest ? value_less(row[j], row[i]) : value_less(row[i], row[j]);
      const bool gt = largest ? value_less(row[i], row[j]) : value_less(row[j], row[i]);
      return lt || (!gt && i < j);  // ties: lower index first
    };
    std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
    for (int64_t j = 0; j < k; ++j) {
      pv[r * k + j] = row[order[size_t(j)]];
      pi[r * k + j] = order[size_t(j)];
    }
  }
}

template <class T>
T cpu_kth_smallest(const Tensor& x, int64_t k) {
  const T* p = x.data<T>();
  std::vector<T> v(p, p + x.numel());
  std::nth_element(v.begin(), v.begin() + (k - 1), v.end(), value_less<T>);
  return v[size_t(k - 1)];
}

}  // namespace

TopKOut topk(const Tensor& x, int64_t k, int64_t dim, bool largest) {
  checks::defined("topk", x, "x");
  checks::float_dtype("topk", x);
  PT_CHECK(x.dim() >= 1, "topk: x must have at least 1 dim, got ", x.describe());
  const int64_t d = normalize_dim(dim, x.dim(), "topk");
  const int64_t n = x.size(d);
  PT_CHECK(k >= 0 && k <= n, "topk: k=", k, " is out of range [0, ", n, "] for dim ", d, " of ", x.describe());
  // Work on rows: swap dim with the last one (its own inverse, so the same swap maps results back).
  Tensor xt = x.transpose(d, -1).contiguous();
  Shape out_shape = xt.shape();
  out_shape.back() = k;
  TopKOut out;
  if (shape_numel(out_shape) == 0) {
    out.values = Tensor::empty(out_shape, x.dtype(), x.device());
    out.indices = Tensor::empty(out_shape, DType::i64, x.device());
  } else {
    PT_DISPATCH_CUDA(x, out = cuda_ops::topk(xt, k, xt.dim() - 1, largest))
    else {
      out.values = Tensor::empty(out_shape, x.dtype(), x.device());
      out.indices = Tensor::empty(out_shape, DType::i64, x.device());
      if (x.dtype() == DType::f32) cpu_topk_rows<float>(xt, n, k, largest, out.values, out.indices);
      else cpu_topk_rows<double>(xt, n, k, largest, out.values, out.indices);
    }
  }
  out.values = out.values.transpose(d, -1).contiguous();
  out.indices = out.indices.transpose(d, -1).contiguous();
  return out;
}

Tensor kth_value_all(const Tensor& x, int64_t k) {
  checks::defined("kth_value_all", x, "x");
  checks::float_dtype("kth_value_all", x);
  PT_CHECK(k >= 1 && k <= x.numel(), "kth_value_all: k=", k, " is out of range [1, ", x.numel(), "] for ",
           x.describe());
  Tensor xc = x.contiguous();
  PT_DISPATCH_CUDA(x, return cuda_ops::kth_value_all(xc, k))
  const double v = x.dtype() == DType::f32 ? double(cpu_kth_smallest<float>(xc, k)) : cpu_kth_smallest<double>(xc, k);
  return Tensor::full({}, v, x.dtype(), x.device());
}

}  // namespace pt
