// One forward + backward per differentiable function. Every backward is written with pt:: tensor ops
// (never raw loops) so it runs on the CPU and on CUDA alike. A lambda captures only the tensors its
// gradient formula reads, and skips the work for inputs that need no gradient.
#include "autograd/functions.h"

#include <initializer_list>
#include <utility>

#include "autograd/autocast.h"
#include "tensor/ops/op_families.h"

namespace pt::autograd {
namespace {

bool needs(const Variable& v) { return v.defined() && v.requires_grad(); }
Tensor if_needed(bool need, const Tensor& t) { return need ? t : Tensor(); }
Tensor scalar_zero(const Tensor& like) { return Tensor::zeros({}, like.dtype(), like.device()); }

// Autocast applies to f32 CUDA operands only (autograd/autocast.h); undefined operands (no bias) pass.
bool autocasts(std::initializer_list<const Variable*> vs) {
  if (!autocast_enabled()) return false;
  for (const Variable* v : vs)
    if (v->defined() && (!v->data().is_cuda() || v->dtype() != DType::f32)) return false;
  return true;
}
Variable cast_if_defined(const Variable& v, DType dtype) { return v.defined() ? to_dtype(v, dtype) : v; }

// An op with one differentiable input: y = f(x), dx = df(g) where df captures what it needs.
template <class F>
Variable unary_op(const Variable& x, Tensor y, const char* name, F df) {
  return Variable::from_op(std::move(y), {x}, [df](const Tensor& g) { return std::vector<Tensor>{df(g)}; }, name);
}

}  // namespace

// ---- element-wise -------------------------------------------------------------------------------

Variable add(const Variable& a, const Variable& b) {
  Shape sa = a.shape(), sb = b.shape();
  bool na = needs(a), nb = needs(b);
  return Variable::from_op(pt::add(a.data(), b.data()), {a, b}, [=](const Tensor& g) {
    return std::vector<Tensor>{na ? sum_to(g, sa) : Tensor(), nb ? sum_to(g, sb) : Tensor()};
  }, "add");
}

Variable sub(const Variable& a, const Variable& b) {
  Shape sa = a.shape(), sb = b.shape();
  bool na = needs(a), nb = needs(b);
  return Variable::from_op(pt::sub(a.data(), b.data()), {a, b}, [=](const Tensor& g) {
    return std::vector<Tensor>{na ? sum_to(g, sa) : Tensor(), nb ? sum_to(pt::neg(g), sb) : Tensor()};
  }, "sub");
}

Variable mul(const Variable& a, const Variable& b) {
  // d(a*b)/da = b and d/db = a: each side saves only the other operand, and only if needed.
  Tensor a_saved = if_needed(needs(b), a.data()), b_saved = if_needed(needs(a), b.data());
  Shape sa = a.shape(), sb = b.shape();
  return Variable::from_op(pt::mul(a.data(), b.data()), {a, b}, [=](const Tensor& g) {
    return std::vector<Tensor>{b_saved.defined() ? sum_to(pt::mul(g, b_saved), sa) : Tensor(),
                               a_saved.defined() ? sum_to(pt::mul(g, a_saved), sb) : Tensor()};
  }, "mul");
}

Variable div(const Variable& a, const Variable& b) {
  // y = a/b: da = g/b, db = -g*a/b² = -g*y/b.
  Tensor y = pt::div(a.data(), b.data());
  Tensor b_saved = b.data(), y_saved = if_needed(needs(b), y);
  Shape sa = a.shape(), sb = b.shape();
  bool na = needs(a);
  return Variable::from_op(y, {a, b}, [=](const Tensor& g) {
    return std::vector<Tensor>{na ? sum_to(pt::div(g, b_saved), sa) : Tensor(),
                               y_saved.defined() ? sum_to(pt::neg(pt::mul(g, pt::div(y_saved, b_saved))), sb)
                                                 : Tensor()};
  }, "div");
}

Variable add_scalar(const Variable& x, double s) {
  return unary_op(x, pt::add_scalar(x.data(), s), "add_scalar", [](const Tensor& g) { return g; });
}

Variable mul_scalar(const Variable& x, double s) {
  return unary_op(x, pt::mul_scalar(x.data(), s), "mul_scalar", [s](const Tensor& g) { return pt::mul_scalar(g, s); });
}

Variable pow_scalar(const Variable& x, double p) {
  Tensor xd = x.data();  // dx = g * p * x^(p-1)
  return unary_op(x, pt::pow_scalar(xd, p), "pow_scalar",
                  [xd, p](const Tensor& g) { return pt::mul(g, pt::mul_scalar(pt::pow_scalar(xd, p - 1.0), p)); });
}

Variable neg(const Variable& x) {
  return unary_op(x, pt::neg(x.data()), "neg", [](const Tensor& g) { return pt::neg(g); });
}

Variable relu(const Variable& x) {
  Tensor xd = x.data();
  return unary_op(x, pt::relu(xd), "relu", [xd](const Tensor& g) { return pt::relu_backward(g, xd); });
}

Variable exp(const Variable& x) {
  Tensor y = pt::exp(x.data());  // dx = g * y
  return unary_op(x, y, "exp", [y](const Tensor& g) { return pt::mul(g, y); });
}

Variable log(const Variable& x) {
  Tensor xd = x.data();  // dx = g / x
  return unary_op(x, pt::log(xd), "log", [xd](const Tensor& g) { return pt::div(g, xd); });
}

Variable sqrt(const Variable& x) {
  Tensor y = pt::sqrt(x.data());  // dx = g / (2 y)
  return unary_op(x, y, "sqrt", [y](const Tensor& g) { return pt::mul_scalar(pt::div(g, y), 0.5); });
}

Variable square(const Variable& x) {
  Tensor xd = x.data();  // dx = 2 g x
  return unary_op(x, pt::square(xd), "square", [xd](const Tensor& g) { return pt::mul_scalar(pt::mul(g, xd), 2.0); });
}

// ---- reductions ---------------------------------------------------------------------------------
// The gradient of a reduction is the output gradient broadcast back over the reduced elements
// (a stride-0 expand view, no copy).

Variable sum(const Variable& x, int64_t dim, bool keepdim) {
  Shape sx = x.shape();
  int64_t d = normalize_dim(dim, x.dim(), "sum");
  return unary_op(x, pt::sum(x.data(), d, keepdim), "sum", [=](const Tensor& g) {
    return (keepdim ? g : g.unsqueeze(d)).expand(sx);
  });
}

Variable mean(const Variable& x, int64_t dim, bool keepdim) {
  Shape sx = x.shape();
  int64_t d = normalize_dim(dim, x.dim(), "mean");
  double scale = 1.0 / double(sx[size_t(d)]);
  return unary_op(x, pt::mean(x.data(), d, keepdim), "mean", [=](const Tensor& g) {
    return pt::mul_scalar(keepdim ? g : g.unsqueeze(d), scale).expand(sx);
  });
}

Variable sum_all(const Variable& x) {
  Shape sx = x.shape();
  return unary_op(x, pt::sum_all(x.data()), "sum_all", [sx](const Tensor& g) { return g.expand(sx); });
}

Variable mean_all(const Variable& x) {
  Shape sx = x.shape();
  double scale = 1.0 / double(x.data().numel());
  return unary_op(x, pt::mean_all(x.data()), "mean_all",
                  [sx, scale](const Tensor& g) { return pt::mul_scalar(g, scale).expand(sx); });
}

// ---- matrix products ----------------------------------------------------------------------------

Variable matmul(const Variable& a, const Variable& b, bool trans_a, bool trans_b) {
  if (autocasts({&a, &b})) {
    const DType low = autocast_dtype();
    // The low-precision operands are not f32, so the inner call does not autocast again.
    return to_dtype(matmul(to_dtype(a, low), to_dtype(b, low), trans_a, trans_b), DType::f32);
  }
  Tensor ad = if_needed(needs(b), a.data()), bd = if_needed(needs(a), b.data());
  Shape sb = b.shape();
  return Variable::from_op(pt::matmul(a.data(), b.data(), trans_a, trans_b), {a, b}, [=](const Tensor& g) {
    // g = dC [..., M, N]; op(A) [..., M, K]; op(B) [..., K, N] (or [K, N] shared).
    Tensor da, db;
    if (bd.defined()) {
      if (!trans_a) da = pt::matmul(g, bd, false, !trans_b);  // dA [M,K] = dC·op(B)ᵀ
      else if (bd.dim() == g.dim()) da = pt::matmul(bd, g, trans_b, true);  // dA [K,M] = op(B)·dCᵀ
      else da = pt::matmul(g, bd, false, !trans_b).transpose(-2, -1).contiguous();  // shared B: (dC·op(B)ᵀ)ᵀ
    }
    if (ad.defined()) {
      if (sb.size() == 2 && ad.dim() > 2 && !trans_a) {
        // Shared B: fold the batch into the rows, one GEMM summing over every batch.
        const int64_t k = ad.size(-1), n = g.size(-1);
        Tensor a2 = ad.reshape({-1, k}), g2 = g.reshape({-1, n});  // [R, K], [R, N]
        db = trans_b ? pt::matmul(g2, a2, true, false)    // dB [N,K] = dCᵀ·A
                     : pt::matmul(a2, g2, true, false);   // dB [K,N] = Aᵀ·dC
      } else {
        db = trans_b ? pt::matmul(g, ad, true, trans_a)   // dB [..., N, K] = dCᵀ·op(A)
                     : pt::matmul(ad, g, !trans_a, false);  // dB [..., K, N] = op(A)ᵀ·dC
        db = sum_to(db, sb);  // sums the batch away when B was shared
      }
    }
    return std::vector<Tensor>{da, db};
  }, "matmul");
}

Variable linear(const Variable& x, const Variable& w, const Variable& b) {
  if (autocasts({&x, &w, &b})) {
    const DType low = autocast_dtype();
    return to_dtype(linear(to_dtype(x, low), to_dtype(w, low), cast_if_defined(b, low)), DType::f32);
  }
  Tensor xd = if_needed(needs(w), x.data()), wd = if_needed(needs(x), w.data());
  Shape sx = x.shape();
  bool nb = needs(b);
  Tensor y = pt::linear(x.data(), w.data(), b.defined() ? b.data() : Tensor());
  return Variable::from_op(y, {x, w, b}, [=](const Tensor& g) {
    // x [..., in] -> x2 [R, in]; w [out, in]; g [..., out] -> g2 [R, out].
    Tensor g2 = g.reshape({-1, g.size(-1)});
    Tensor dx = wd.defined() ? pt::matmul(g2, wd).reshape(sx) : Tensor();  // [R, out]·[out, in]
    Tensor dw = xd.defined() ? pt::matmul(g2, xd.reshape({-1, xd.size(-1)}), true, false) : Tensor();  // [out, in]
    Tensor db = nb ? pt::sum(g2, 0) : Tensor();  // [out]
    return std::vector<Tensor>{dx, dw, db};
  }, "linear");
}

// ---- shape --------------------------------------------------------------------------------------

Variable reshape(const Variable& x, const Shape& shape) {
  Shape sx = x.shape();
  return unary_op(x, x.data().reshape(shape), "reshape", [sx](const Tensor& g) { return g.reshape(sx); });
}

Variable view(const Variable& x, const Shape& shape) {
  Shape sx = x.shape();
  return unary_op(x, x.data().view(shape), "view", [sx](const Tensor& g) { return g.reshape(sx); });
}

Variable transpose(const Variable& x, int64_t d0, int64_t d1) {
  return unary_op(x, x.data().transpose(d0, d1), "transpose",
                  [d0, d1](const Tensor& g) { return g.transpose(d0, d1); });
}

Variable permute(const Variable& x, const std::vector<int64_t>& order) {
  Tensor y = x.data().permute(order);  // validates order
  std::vector<int64_t> inverse(order.size());
  for (size_t i = 0; i < order.size(); ++i) inverse[size_t(normalize_dim(order[i], x.dim(), "permute"))] = int64_t(i);
  return unary_op(x, y, "permute", [inverse](const Tensor& g) { return g.permute(inverse); });
}

Variable narrow(const Variable& x, int64_t dim, int64_t start, int64_t length) {
  Tensor xd = x.data();
  int64_t d = normalize_dim(dim, x.dim(), "narrow");
  Shape sx = x.shape();
  DType dt = x.dtype();
  Device dev = x.device();
  return unary_op(x, xd.narrow(d, start, length), "narrow", [=](const Tensor& g) {
    Tensor dx = Tensor::zeros(sx, dt, dev);  // zero outside the slice
    dx.narrow(d, start, length).copy_(g);
    return dx;
  });
}

Variable contiguous(const Variable& x) {
  return unary_op(x, x.data().contiguous(), "contiguous", [](const Tensor& g) { return g; });
}

Variable to_dtype(const Variable& x, DType dtype) {
  PT_CHECK(is_floating(dtype), "to_dtype: ", dtype_name(dtype), " is not a floating dtype (gradients need one)");
  const DType from = x.dtype();
  return unary_op(x, x.data().to(dtype), "to_dtype", [from](const Tensor& g) { return g.to(from); });
}

Variable expand(const Variable& x, const Shape& shape) {
  Shape sx = x.shape();
  return unary_op(x, x.data().expand(shape), "expand", [sx](const Tensor& g) { return sum_to(g, sx); });
}

Variable unsqueeze(const Variable& x, int64_t dim) {
  Tensor y = x.data().unsqueeze(dim);
  int64_t d = dim < 0 ? dim + x.dim() + 1 : dim;
  return unary_op(x, y, "unsqueeze", [d](const Tensor& g) { return g.squeeze(d); });
}

Variable squeeze(const Variable& x, int64_t dim) {
  int64_t d = normalize_dim(dim, x.dim(), "squeeze");
  return unary_op(x, x.data().squeeze(d), "squeeze", [d](const Tensor& g) { return g.unsqueeze(d); });
}

Variable cat(const std::vector<Variable>& xs, int64_t dim) {
  PT_CHECK(!xs.empty(), "cat: no variables given");
  std::vector<Tensor> data;
  std::vector<int64_t> sizes;
  std::vector<bool> need;
  for (const Variable& x : xs) {
    data.push_back(x.data());
    need.push_back(needs(x));
  }
  Tensor y = pt::cat(data, dim);  // validates shapes
  int64_t d = normalize_dim(dim, y.dim(), "cat");
  for (const Tensor& t : data) sizes.push_back(t.size(d));
  return Variable::from_op(y, xs, [=](const Tensor& g) {
    std::vector<Tensor> grads(sizes.size());
    int64_t at = 0;
    for (size_t i = 0; i < sizes.size(); at += sizes[i], ++i)
      if (need[i]) grads[i] = g.narrow(d, at, sizes[i]);
    return grads;
  }, "cat");
}

// ---- softmax, normalisation, lookup, loss -------------------------------------------------------

Variable softmax(const Variable& x, bool causal) {
  // The softmax family's selection (tensor/ops/op_families.h); masked entries are exactly 0, so is their gradient.
  Tensor y = softmax_family().get("", x.device())(x.data(), causal);
  return unary_op(x, y, "softmax", [y](const Tensor& g) { return pt::softmax_backward(y, g); });
}

Variable log_softmax(const Variable& x) {
  Tensor y = pt::log_softmax(x.data());
  return unary_op(x, y, "log_softmax", [y](const Tensor& g) { return pt::log_softmax_backward(y, g); });
}

Variable layer_norm(const Variable& x, const Variable& weight, const Variable& bias, double eps) {
  LayerNormOut out = layer_norm_family().get("", x.device())(x.data(), weight.data(), bias.data(), eps);
  Tensor xd = x.data(), wd = weight.data(), mu = out.mean, rstd = out.rstd;
  return Variable::from_op(out.y, {x, weight, bias}, [=](const Tensor& g) {
    LayerNormGrads d = pt::layer_norm_backward(g, xd, wd, mu, rstd);
    return std::vector<Tensor>{d.dx, d.dweight, d.dbias};
  }, "layer_norm");
}

Variable embedding(const Variable& weight, const Tensor& ids, int64_t padding_idx) {
  const int64_t rows = weight.size(0);
  return unary_op(weight, pt::embedding(weight.data(), ids), "embedding", [=](const Tensor& g) {
    return pt::embedding_backward(g, ids, rows, padding_idx);
  });
}

Variable cross_entropy(const Variable& logits, const Tensor& targets, int64_t ignore_index, Reduction reduction) {
  CrossEntropyOut out = pt::cross_entropy(logits.data(), targets, ignore_index, reduction);
  Tensor ld = logits.data();
  return unary_op(logits, out.loss, "cross_entropy", [=](const Tensor& g) {
    return pt::cross_entropy_backward(ld, targets, out, g, ignore_index, reduction);
  });
}

// ---- masks and selection ------------------------------------------------------------------------

Variable dropout(const Variable& x, double p, Generator& gen, bool training) {
  if (!training || p == 0.0) return x;
  Tensor mask = pt::dropout_mask(x.shape(), p, gen, x.dtype(), x.device());  // 0 or 1/(1-p)
  return unary_op(x, pt::mul(x.data(), mask), "dropout", [mask](const Tensor& g) { return pt::mul(g, mask); });
}

Variable apply_mask(const Variable& x, const Tensor& keep) {
  // Masked (pruned) entries get exactly 0 gradient, so optimizers never move them.
  return unary_op(x, pt::apply_mask(x.data(), keep), "apply_mask",
                  [keep](const Tensor& g) { return pt::apply_mask(g, keep); });
}

Variable masked_fill(const Variable& x, const Tensor& mask, double value) {
  Shape sx = x.shape();  // the mask may broadcast x to a larger shape
  return unary_op(x, pt::masked_fill(x.data(), mask, value), "masked_fill",
                  [mask, sx](const Tensor& g) { return sum_to(pt::masked_fill(g, mask, 0.0), sx); });
}

Variable where(const Tensor& cond, const Variable& a, const Variable& b) {
  Shape sa = a.shape(), sb = b.shape();
  bool na = needs(a), nb = needs(b);
  return Variable::from_op(pt::where(cond, a.data(), b.data()), {a, b}, [=](const Tensor& g) {
    Tensor zero = scalar_zero(g);
    return std::vector<Tensor>{na ? sum_to(pt::where(cond, g, zero), sa) : Tensor(),
                               nb ? sum_to(pt::where(cond, zero, g), sb) : Tensor()};
  }, "where");
}

}  // namespace pt::autograd
