// Layer norm over the last dim: validation + dispatch and the CPU reference (ops/layer_norm.cu is the
// CUDA side). y = (x - mean) * rstd * weight + bias with the biased variance (as PyTorch) and
// rstd = 1 / sqrt(var + eps). mean/rstd are saved per row in f32 (f64 for f64 x) for the backward.
#include <cmath>
#include <type_traits>
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

DType stat_dtype(DType x) { return x == DType::f64 ? DType::f64 : DType::f32; }

// weight/bias-like parameter: [C] with x's dtype and device.
void check_param(const char* op, const Tensor& x, const Tensor& p, const char* name) {
  checks::defined(op, p, name);
  checks::same_device(op, {&x, &p});
  checks::same_dtype(op, x, p);
  PT_CHECK(p.dim() == 1 && p.size(0) == x.size(-1), op, ": ", name, " shape ", shape_str(p.shape()),
           " does not match the last dim of x ", x.describe());
}

void check_x(const char* op, const Tensor& x) {
  checks::defined(op, x, "x");
  checks::float_dtype(op, x);
  PT_CHECK(x.dim() >= 1, op, ": x must have at least 1 dim, got ", x.describe());
}

template <class T, class S>
void cpu_layer_norm(const T* x, const T* w, const T* b, T* y, S* mean, S* rstd, int64_t rows, int64_t c,
                    double eps) {
  cpu::parallel_ranges(rows, c, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * c;
      T* yr = y + r * c;
      double m = 0;
      for (int64_t j = 0; j < c; ++j) m += double(xr[j]);
      m /= double(c);
      double var = 0;  // two passes: no cancellation when |mean| >> std
      for (int64_t j = 0; j < c; ++j) var += (double(xr[j]) - m) * (double(xr[j]) - m);
      var /= double(c);
      const double rs = 1.0 / std::sqrt(var + eps);
      for (int64_t j = 0; j < c; ++j) yr[j] = T((double(xr[j]) - m) * rs * double(w[j]) + double(b[j]));
      mean[r] = S(m);
      rstd[r] = S(rs);
    }
  }, 1);
}

// dx = rstd * (w*dy - mean(w*dy) - xhat * mean(w*dy*xhat)); dweight = sum dy*xhat; dbias = sum dy.
// Rows in parallel for dx, then column ranges in parallel for dweight/dbias (each sum still in row order).
template <class T, class S>
void cpu_layer_norm_backward(const T* dy, const T* x, const T* w, const S* mean, const S* rstd, T* dx, T* dw,
                             T* db, int64_t rows, int64_t c) {
  cpu::parallel_ranges(rows, c, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* dyr = dy + r * c;
      const T* xr = x + r * c;
      T* dxr = dx + r * c;
      const double m = double(mean[r]), rs = double(rstd[r]);
      double a = 0, bsum = 0;
      for (int64_t j = 0; j < c; ++j) {
        const double xhat = (double(xr[j]) - m) * rs, g = double(dyr[j]);
        a += g * double(w[j]);
        bsum += g * double(w[j]) * xhat;
      }
      a /= double(c);
      bsum /= double(c);
      for (int64_t j = 0; j < c; ++j) {
        const double xhat = (double(xr[j]) - m) * rs;
        dxr[j] = T(rs * (double(dyr[j]) * double(w[j]) - a - xhat * bsum));
      }
    }
  }, 1);
  cpu::parallel_ranges(c, rows, [&](int64_t j0, int64_t j1) {
    std::vector<double> acc_w(size_t(j1 - j0), 0.0), acc_b(size_t(j1 - j0), 0.0);
    for (int64_t r = 0; r < rows; ++r) {
      const T* dyr = dy + r * c;
      const T* xr = x + r * c;
      const double m = double(mean[r]), rs = double(rstd[r]);
      for (int64_t j = j0; j < j1; ++j) {
        const double xhat = (double(xr[j]) - m) * rs, g = double(dyr[j]);
        acc_w[size_t(j - j0)] += g * xhat;
        acc_b[size_t(j - j0)] += g;
      }
    }
    for (int64_t j = j0; j < j1; ++j) {
      dw[j] = T(acc_w[size_t(j - j0)]);
      db[j] = T(acc_b[size_t(j - j0)]);
    }
  });
}

}  // namespace

LayerNormOut layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  check_x("layer_norm", x);
  check_param("layer_norm", x, weight, "weight");
  check_param("layer_norm", x, bias, "bias");
  PT_CHECK(eps >= 0 && std::isfinite(eps), "layer_norm: eps must be finite and >= 0, got ", eps);
  Tensor xc = x.contiguous(), wc = weight.contiguous(), bc = bias.contiguous();
  PT_DISPATCH_CUDA(x, return cuda_ops::layer_norm(xc, wc, bc, eps))
  const int64_t c = x.size(-1), rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  LayerNormOut out{Tensor::empty(x.shape(), x.dtype()), Tensor::empty({rows}, stat_dtype(x.dtype())),
                   Tensor::empty({rows}, stat_dtype(x.dtype()))};
  dispatch_cpu_float(x.dtype(), "layer_norm", [&]<class T>() {
    using S = std::conditional_t<std::is_same_v<T, double>, double, float>;
    cpu_layer_norm<T, S>(xc.data<T>(), wc.data<T>(), bc.data<T>(), out.y.data<T>(), out.mean.data<S>(),
                         out.rstd.data<S>(), rows, c, eps);
  });
  return out;
}

LayerNormGrads layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                   const Tensor& rstd) {
  const char* op = "layer_norm_backward";
  check_x(op, x);
  checks::defined(op, dy, "dy");
  checks::same_device(op, {&x, &dy});
  checks::same_dtype(op, x, dy);
  PT_CHECK(dy.shape() == x.shape(), op, ": dy ", dy.describe(), " does not match x ", x.describe());
  check_param(op, x, weight, "weight");
  const int64_t c = x.size(-1);
  const int64_t rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  for (const Tensor* s : {&mean, &rstd}) {
    checks::defined(op, *s, s == &mean ? "mean" : "rstd");
    checks::same_device(op, {&x, s});
    checks::dtype_in(op, *s, {stat_dtype(x.dtype())});
    PT_CHECK(s->numel() == rows, op, ": ", s == &mean ? "mean " : "rstd ", s->describe(), " must have ", rows,
             " elements (one per row of x ", x.describe(), ")");
  }
  Tensor dyc = dy.contiguous(), xc = x.contiguous(), wc = weight.contiguous();
  Tensor mc = mean.contiguous().reshape({rows}), rc = rstd.contiguous().reshape({rows});
  PT_DISPATCH_CUDA(x, return cuda_ops::layer_norm_backward(dyc, xc, wc, mc, rc))
  LayerNormGrads g{Tensor::empty(x.shape(), x.dtype()), Tensor::empty({c}, x.dtype()), Tensor::empty({c}, x.dtype())};
  dispatch_cpu_float(x.dtype(), op, [&]<class T>() {
    using S = std::conditional_t<std::is_same_v<T, double>, double, float>;
    cpu_layer_norm_backward<T, S>(dyc.data<T>(), xc.data<T>(), wc.data<T>(), mc.data<S>(), rc.data<S>(),
                                  g.dx.data<T>(), g.dweight.data<T>(), g.dbias.data<T>(), rows, c);
  });
  return g;
}

}  // namespace pt
