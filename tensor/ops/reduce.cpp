// Reductions: validation + dispatch and the CPU reference (ops/reduce.cu is the CUDA side).
// A reduction over `dim` sees x (made contiguous) as [outer, n, inner] and reduces the middle axis;
// the CPU accumulates in double. max/argmax propagate NaN (the first NaN wins) and break ties by the
// lowest index, on both devices.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "tensor/ops.h"
#include "tensor/ops/checks.h"
#include "tensor/ops/cpu_loops.h"
#include "tensor/ops/dispatch.h"
#if PT_CUDA
#include "tensor/ops/cuda_ops.h"
#endif

namespace pt {
namespace {

// Kinds understood by cuda_ops::reduce_dim (documented in cuda_ops.h and reduce.cu).
constexpr int kReduceSum = 0, kReduceMean = 1, kReduceMax = 2;

struct DimSplit {
  int64_t outer = 1, n = 1, inner = 1;
  Shape out_shape;
};

DimSplit split_at(const Tensor& x, int64_t dim, bool keepdim, const char* op) {
  DimSplit s;
  if (x.dim() == 0) {  // a 0-d tensor reduces over its single element and stays 0-d (dim 0 or -1, as torch)
    PT_CHECK(dim == 0 || dim == -1, op, ": dim ", dim, " out of range for 0-d ", x.describe());
    return s;
  }
  const int64_t d = normalize_dim(dim, x.dim(), op);
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (i < d) s.outer *= x.size(i);
    else if (i > d) s.inner *= x.size(i);
    if (i != d) s.out_shape.push_back(x.size(i));
    else if (keepdim) s.out_shape.push_back(1);
  }
  s.n = x.size(d);
  return s;
}

void check_float_input(const char* op, const Tensor& x) {
  checks::defined(op, x, "x");
  checks::float_dtype(op, x);
}

// out[o, i] = scale * sum_k x[o, k, i], each sum in k order; the inner > 1 case walks rows of x in memory order.
// Threads take whole outputs (rows o, or column ranges i), so the bits do not depend on the number of threads.
template <class T>
void cpu_sum_dim(const T* x, T* out, const DimSplit& s, double scale) {
  if (s.inner == 1) {
    cpu::parallel_ranges(s.outer, s.n, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        const T* row = x + o * s.n;
        double acc = 0;
        for (int64_t k = 0; k < s.n; ++k) acc += double(row[k]);
        out[o] = T(acc * scale);
      }
    }, 1);
    return;
  }
  for (int64_t o = 0; o < s.outer; ++o) {
    cpu::parallel_ranges(s.inner, s.n, [&](int64_t i0, int64_t i1) {
      std::vector<double> acc(size_t(i1 - i0), 0.0);
      for (int64_t k = 0; k < s.n; ++k) {
        const T* row = x + (o * s.n + k) * s.inner;
        for (int64_t i = i0; i < i1; ++i) acc[size_t(i - i0)] += double(row[i]);
      }
      for (int64_t i = i0; i < i1; ++i) out[o * s.inner + i] = T(acc[size_t(i - i0)] * scale);
    });
  }
}

// Max value and its index along the middle axis; either output pointer may be null.
template <class T>
void cpu_argmax_dim(const T* x, T* values, int64_t* indices, const DimSplit& s) {
  std::vector<T> best(size_t(s.inner));
  std::vector<int64_t> where(size_t(s.inner));
  for (int64_t o = 0; o < s.outer; ++o) {
    const T* base = x + o * s.n * s.inner;
    for (int64_t i = 0; i < s.inner; ++i) { best[size_t(i)] = base[i]; where[size_t(i)] = 0; }
    for (int64_t k = 1; k < s.n; ++k) {
      const T* row = base + k * s.inner;
      for (int64_t i = 0; i < s.inner; ++i) {
        T& b = best[size_t(i)];
        if (std::isnan(b)) continue;  // the first NaN is final
        if (std::isnan(row[i]) || row[i] > b) { b = row[i]; where[size_t(i)] = k; }
      }
    }
    for (int64_t i = 0; i < s.inner; ++i) {
      if (values) values[o * s.inner + i] = best[size_t(i)];
      if (indices) indices[o * s.inner + i] = where[size_t(i)];
    }
  }
}

Tensor sum_or_mean(const char* op, const Tensor& x, int64_t dim, bool keepdim, bool is_mean) {
  check_float_input(op, x);
  const DimSplit s = split_at(x, dim, keepdim, op);
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(s.out_shape, x.dtype(), x.device());
  if (out.numel() == 0) return out;
  PT_DISPATCH_CUDA(x, cuda_ops::reduce_dim(out, xc, s.outer, s.n, s.inner, is_mean ? kReduceMean : kReduceSum);
                   return out)
  // mean over an empty axis is 0/0 = NaN, as in PyTorch
  const double scale = is_mean ? (s.n > 0 ? 1.0 / double(s.n) : std::numeric_limits<double>::quiet_NaN()) : 1.0;
  dispatch_cpu_float(x.dtype(), op, [&]<class T>() { cpu_sum_dim<T>(xc.data<T>(), out.data<T>(), s, scale); });
  return out;
}

constexpr int64_t kNormBlock = 1 << 14;

// Sum of squares of n elements in double: lane l takes the elements i = l (mod 4), then (l0 + l2) + (l1 + l3).
template <class T>
double sum_squares_block(const T* p, int64_t n) {
  double lane[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int l = 0; l < 4; ++l) lane[l] += double(p[i + l]) * double(p[i + l]);
  for (; i < n; ++i) lane[i % 4] += double(p[i]) * double(p[i]);
  return (lane[0] + lane[2]) + (lane[1] + lane[3]);
}

DimSplit checked_argmax_split(const char* op, const Tensor& x, int64_t dim, bool keepdim) {
  check_float_input(op, x);
  const DimSplit s = split_at(x, dim, keepdim, op);
  PT_CHECK(s.n > 0 || s.outer * s.inner == 0, op, ": cannot reduce over dim ", dim, " of size 0 in ",
           x.describe());
  return s;
}

}  // namespace

Tensor sum(const Tensor& x, int64_t dim, bool keepdim) { return sum_or_mean("sum", x, dim, keepdim, false); }
Tensor mean(const Tensor& x, int64_t dim, bool keepdim) { return sum_or_mean("mean", x, dim, keepdim, true); }

Tensor max(const Tensor& x, int64_t dim, bool keepdim) {
  const DimSplit s = checked_argmax_split("max", x, dim, keepdim);
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(s.out_shape, x.dtype(), x.device());
  if (out.numel() == 0) return out;
  PT_DISPATCH_CUDA(x, cuda_ops::reduce_dim(out, xc, s.outer, s.n, s.inner, kReduceMax); return out)
  dispatch_cpu_float(x.dtype(), "max",
                     [&]<class T>() { cpu_argmax_dim<T>(xc.data<T>(), out.data<T>(), nullptr, s); });
  return out;
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  const DimSplit s = checked_argmax_split("argmax", x, dim, keepdim);
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(s.out_shape, DType::i64, x.device());
  if (out.numel() == 0) return out;
  PT_DISPATCH_CUDA(x, cuda_ops::argmax_dim(out, xc, s.outer, s.n, s.inner); return out)
  dispatch_cpu_float(x.dtype(), "argmax",
                     [&]<class T>() { cpu_argmax_dim<T>(xc.data<T>(), nullptr, out.data<int64_t>(), s); });
  return out;
}

Tensor sum_all(const Tensor& x) {
  check_float_input("sum_all", x);
  return sum_or_mean("sum_all", x.reshape({-1}), 0, false, false);
}

Tensor mean_all(const Tensor& x) {
  check_float_input("mean_all", x);
  return sum_or_mean("mean_all", x.reshape({-1}), 0, false, true);
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  check_float_input("sum_to", x);
  PT_CHECK(shape.size() <= size_t(x.dim()) && broadcast_shapes(shape, x.shape(), "sum_to") == x.shape(),
           "sum_to: shape ", shape_str(shape), " does not broadcast to ", x.describe());
  if (x.shape() == shape) return x;  // nothing was broadcast: x itself, no copy (like torch's sum_to)
  // Leading dims that `shape` lacks collapse into one, summed in a single pass.
  const int64_t lead = x.dim() - int64_t(shape.size());
  Tensor r = x;
  if (lead > 0) {
    Shape folded{-1};
    folded.insert(folded.end(), shape.begin(), shape.end());
    for (size_t i = 0; i < shape.size(); ++i) folded[i + 1] = x.size(lead + int64_t(i));
    r = sum(x.reshape(folded), 0, false);
  }
  for (int64_t i = 0; i < int64_t(shape.size()); ++i)
    if (shape[size_t(i)] == 1 && r.size(i) != 1) r = sum(r, i, true);
  return r;
}

Tensor global_norm(const std::vector<Tensor>& xs) {
  if (xs.empty()) return Tensor::zeros({}, DType::f32, Device::cpu);
  bool any_f64 = false;
  for (size_t i = 0; i < xs.size(); ++i) {
    PT_CHECK(xs[i].defined(), "global_norm: tensor ", i, " of ", xs.size(), " is undefined");
    checks::float_dtype("global_norm", xs[i]);
    checks::same_device("global_norm", {&xs[0], &xs[i]});
    any_f64 = any_f64 || xs[i].dtype() == DType::f64;
  }
  // f64 as soon as one input is f64, so no precision is thrown away
  const DType acc_dtype = any_f64 ? DType::f64 : DType::f32;
  const Device device = xs[0].device();
#if PT_CUDA
  if (device == Device::cuda) {
    Tensor acc = Tensor::zeros({}, acc_dtype, Device::cuda);
    for (const Tensor& x : xs)
      if (x.numel() > 0) cuda_ops::sum_squares_accumulate(acc, x.contiguous());
    return sqrt(acc);
  }
#endif
  // Squares summed in double over fixed blocks of each tensor (four lanes per block, added in a fixed order), the
  // blocks in parallel, then every block's sum in order: the same bits for any number of threads.
  double total = 0;
  for (const Tensor& x : xs) {
    Tensor xc = x.contiguous();
    dispatch_cpu_float(x.dtype(), "global_norm", [&]<class T>() {
      const T* p = xc.data<T>();
      const int64_t n = xc.numel(), blocks = (n + kNormBlock - 1) / kNormBlock;
      std::vector<double> block_sum(static_cast<size_t>(blocks), 0.0);
      cpu::parallel_ranges(blocks, kNormBlock, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b)
          block_sum[size_t(b)] = sum_squares_block(p + b * kNormBlock, std::min(kNormBlock, n - b * kNormBlock));
      }, 1);
      for (double b : block_sum) total += b;
    });
  }
  return Tensor::full({}, std::sqrt(total), acc_dtype, device);
}

}  // namespace pt
