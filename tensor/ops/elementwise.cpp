// Element-wise ops: validation + dispatch, and the CPU reference (ops/elementwise.cu is the CUDA side).
#include <cmath>

#include "tensor/ops.h"
#include "tensor/ops/checks.h"
#include "tensor/ops/cpu_loops.h"
#include "tensor/ops/dispatch.h"
#if PT_CUDA
#include "tensor/ops/cuda_ops.h"
#endif

namespace pt {

namespace {

// Runs run(f) with f the scalar function of `op`, a distinct lambda per op, so each op gets its own loop that
// the compiler can vectorise (a switch inside the loop would be taken per element).
template <class T, class Run> void with_binary_op(BinaryOp op, Run&& run) {
  switch (op) {
    case BinaryOp::add: return run([](T a, T b) { return a + b; });
    case BinaryOp::sub: return run([](T a, T b) { return a - b; });
    case BinaryOp::mul: return run([](T a, T b) { return a * b; });
    case BinaryOp::div: return run([](T a, T b) { return a / b; });
    case BinaryOp::maximum: return run([](T a, T b) { return (a > b || std::isnan(a)) ? a : b; });
    case BinaryOp::minimum: return run([](T a, T b) { return (a < b || std::isnan(a)) ? a : b; });
  }
}

template <class T, class Run> void with_unary_op(UnaryOp op, T s, Run&& run) {
  switch (op) {
    case UnaryOp::neg: return run([](T x) { return -x; });
    case UnaryOp::relu: return run([](T x) { return x > T(0) ? x : T(0); });
    case UnaryOp::exp: return run([](T x) { return std::exp(x); });
    case UnaryOp::log: return run([](T x) { return std::log(x); });
    case UnaryOp::sqrt: return run([](T x) { return std::sqrt(x); });
    case UnaryOp::rsqrt: return run([](T x) { return T(1) / std::sqrt(x); });
    case UnaryOp::abs: return run([](T x) { return std::abs(x); });
    case UnaryOp::square: return run([](T x) { return x * x; });
    case UnaryOp::add_scalar: return run([s](T x) { return x + s; });
    case UnaryOp::mul_scalar: return run([s](T x) { return x * s; });
    case UnaryOp::pow_scalar: return run([s](T x) { return std::pow(x, s); });
  }
}

template <class T> bool compare_scalar_op(T a, T b, CompareOp op) {
  switch (op) {
    case CompareOp::eq: return a == b;
    case CompareOp::ne: return a != b;
    case CompareOp::lt: return a < b;
    case CompareOp::le: return a <= b;
    case CompareOp::gt: return a > b;
    case CompareOp::ge: return a >= b;
  }
  return false;
}

// out[i] = f(a[i], b[i]) over out's shape; a and b broadcast to it. Pointers are storage bases. Large tensors
// are split over threads (each element is computed alone, so the bits do not depend on the split).
template <class O, class A, class B, class F>
void map2_cpu(const Tensor& out, const Tensor& a, const Tensor& b, F f) {
  O* po = static_cast<O*>(out.storage()->data());
  const A* pa = static_cast<const A*>(a.storage()->data());
  const B* pb = static_cast<const B*>(b.storage()->data());
  if (out.is_contiguous() && a.is_contiguous() && b.is_contiguous() && a.shape() == out.shape() &&
      b.shape() == out.shape()) {
    po += out.offset(); pa += a.offset(); pb += b.offset();
    cpu::parallel_ranges(out.numel(), 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) po[i] = f(pa[i], pb[i]);
    });
    return;
  }
  Strides so = out.strides(), sa = cpu::broadcast_strides(a, out.shape()), sb = cpu::broadcast_strides(b, out.shape());
  cpu::for_each_offset<3>(out.shape(), {&so, &sa, &sb}, {out.offset(), a.offset(), b.offset()},
                          [&](int64_t i, int64_t j, int64_t k) { po[i] = f(pa[j], pb[k]); });
}

void check_binary(const char* op, const Tensor& a, const Tensor& b) {
  checks::defined(op, a, "a");
  checks::defined(op, b, "b");
  checks::same_device(op, {&a, &b});
  checks::same_dtype(op, a, b);
  checks::float_dtype(op, a);
}

const char* binary_name(BinaryOp op) {
  static const char* names[] = {"add", "sub", "mul", "div", "maximum", "minimum"};
  return names[int(op)];
}
const char* unary_name(UnaryOp op) {
  static const char* names[] = {"neg", "relu", "exp", "log", "sqrt", "rsqrt", "abs", "square",
                                "add_scalar", "mul_scalar", "pow_scalar"};
  return names[int(op)];
}

}  // namespace

// ---- binary -------------------------------------------------------------------------------------

void binary_(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op) {
  const char* name = binary_name(op);
  check_binary(name, a, b);
  checks::same_device(name, {&out, &a});
  checks::same_dtype(name, out, a);
  Shape s = broadcast_shapes(a.shape(), b.shape(), name);
  PT_CHECK(broadcast_shapes(s, out.shape(), name) == out.shape(), name, ": result of shape ", shape_str(s),
           " does not fit the output ", out.describe());
  PT_DISPATCH_CUDA(out, return cuda_ops::binary(out, a, b, op));
  dispatch_cpu_float(a.dtype(), name, [&]<class T>() {
    with_binary_op<T>(op, [&](auto f) { map2_cpu<T, T, T>(out, a, b, f); });
  });
}

Tensor binary(const Tensor& a, const Tensor& b, BinaryOp op) {
  check_binary(binary_name(op), a, b);
  Tensor out = Tensor::empty(broadcast_shapes(a.shape(), b.shape(), binary_name(op)), a.dtype(), a.device());
  binary_(out, a, b, op);
  return out;
}

// ---- unary --------------------------------------------------------------------------------------

void unary_(const Tensor& out, const Tensor& x, UnaryOp op, double scalar) {
  const char* name = unary_name(op);
  checks::defined(name, x, "x");
  checks::defined(name, out, "out");
  checks::same_device(name, {&out, &x});
  checks::same_dtype(name, out, x);
  checks::float_dtype(name, x);
  PT_CHECK(out.shape() == x.shape(), name, ": output ", out.describe(), " does not match input ", x.describe());
  PT_DISPATCH_CUDA(x, return cuda_ops::unary(out, x, op, scalar));
  dispatch_cpu_float(x.dtype(), name, [&]<class T>() {
    with_unary_op<T>(op, T(scalar), [&](auto f) { map2_cpu<T, T, T>(out, x, x, [f](T v, T) { return f(v); }); });
  });
}

Tensor unary(const Tensor& x, UnaryOp op, double scalar) {
  checks::defined(unary_name(op), x, "x");
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  unary_(out, x, op, scalar);
  return out;
}

Tensor relu_backward(const Tensor& grad_out, const Tensor& x) {
  check_binary("relu_backward", grad_out, x);
  PT_CHECK(grad_out.shape() == x.shape(), "relu_backward: grad ", grad_out.describe(), " does not match x ",
           x.describe());
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  PT_DISPATCH_CUDA(x, cuda_ops::relu_backward(out, grad_out, x); return out);
  dispatch_cpu_float(x.dtype(), "relu_backward", [&]<class T>() {
    map2_cpu<T, T, T>(out, grad_out, x, [](T g, T v) { return v > T(0) ? g : T(0); });
  });
  return out;
}

// ---- comparisons and selection -------------------------------------------------------------------

static void check_compare_dtype(const char* op, const Tensor& t) {
  if (t.is_cuda())
    checks::dtype_in(op, t, {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8});
  else
    checks::dtype_in(op, t, {DType::f32, DType::f64, DType::i32, DType::i64, DType::u8});
}

Tensor compare(const Tensor& a, const Tensor& b, CompareOp op) {
  checks::defined("compare", a, "a");
  checks::defined("compare", b, "b");
  checks::same_device("compare", {&a, &b});
  checks::same_dtype("compare", a, b);
  check_compare_dtype("compare", a);
  Tensor out = Tensor::empty(broadcast_shapes(a.shape(), b.shape(), "compare"), DType::u8, a.device());
  PT_DISPATCH_CUDA(a, cuda_ops::compare(out, a, b, op); return out);
  dispatch_any(a.dtype(), [&]<class T>() {
    if constexpr (std::is_same_v<T, half_t> || std::is_same_v<T, bfloat16_t>) return;
    else map2_cpu<uint8_t, T, T>(out, a, b, [op](T x, T y) { return uint8_t(compare_scalar_op(x, y, op)); });
  });
  return out;
}

Tensor compare_scalar(const Tensor& a, double s, CompareOp op) {
  checks::defined("compare_scalar", a, "a");
  check_compare_dtype("compare_scalar", a);
  Tensor out = Tensor::empty(a.shape(), DType::u8, a.device());
  PT_DISPATCH_CUDA(a, cuda_ops::compare_scalar(out, a, s, op); return out);
  dispatch_any(a.dtype(), [&]<class T>() {
    if constexpr (std::is_same_v<T, half_t> || std::is_same_v<T, bfloat16_t>) return;
    else map2_cpu<uint8_t, T, T>(out, a, a, [op, s](T x, T) { return uint8_t(compare_scalar_op<double>(double(x), s, op)); });
  });
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  checks::defined("where", cond, "cond");
  check_binary("where", a, b);
  checks::same_device("where", {&cond, &a});
  checks::dtype_in("where", cond, {DType::u8});
  Shape s = broadcast_shapes(cond.shape(), broadcast_shapes(a.shape(), b.shape(), "where"), "where");
  Tensor out = Tensor::empty(s, a.dtype(), a.device());
  PT_DISPATCH_CUDA(a, cuda_ops::where(out, cond, a, b); return out);
  dispatch_cpu_float(a.dtype(), "where", [&]<class T>() {
    T* po = out.data<T>();
    const uint8_t* pc = static_cast<const uint8_t*>(cond.storage()->data());
    const T* pa = static_cast<const T*>(a.storage()->data());
    const T* pb = static_cast<const T*>(b.storage()->data());
    Strides so = out.strides(), sc = cpu::broadcast_strides(cond, s), sa = cpu::broadcast_strides(a, s),
            sb = cpu::broadcast_strides(b, s);
    cpu::for_each_offset<4>(s, {&so, &sc, &sa, &sb}, {0, cond.offset(), a.offset(), b.offset()},
                            [&](int64_t i, int64_t c, int64_t j, int64_t k) { po[i] = pc[c] ? pa[j] : pb[k]; });
  });
  return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  checks::defined("masked_fill", x, "x");
  return where(mask, Tensor::full({}, value, x.dtype(), x.device()), x);
}

Tensor apply_mask(const Tensor& x, const Tensor& keep) {
  checks::defined("apply_mask", x, "x");
  checks::defined("apply_mask", keep, "keep");
  PT_CHECK(broadcast_shapes(keep.shape(), x.shape(), "apply_mask") == x.shape(), "apply_mask: mask ",
           keep.describe(), " does not broadcast to ", x.describe());
  return where(keep, x, Tensor::zeros({}, x.dtype(), x.device()));
}

Tensor dropout_mask(const Shape& shape, double p, Generator& gen, DType dtype, Device device) {
  PT_CHECK(p >= 0.0 && p < 1.0, "dropout_mask: p = ", p, " is outside [0, 1)");
  Tensor out = Tensor::empty(shape, dtype, device);
  uint64_t off = gen.advance(uint64_t(out.numel()));
  PT_DISPATCH_CUDA(out, checks::float_dtype("dropout_mask", out); cuda_ops::dropout_mask(out, p, gen.seed, off);
                   return out);
  const double scale = 1.0 / (1.0 - p);
  dispatch_cpu_float(dtype, "dropout_mask", [&]<class T>() {
    T* po = out.data<T>();
    cpu::parallel_ranges(out.numel(), 8, [&](int64_t begin, int64_t end) {  // counter-based: any split, same bits
      for (int64_t i = begin; i < end; ++i)
        po[i] = random_uniform01(gen.seed, off + uint64_t(i)) >= p ? T(scale) : T(0);
    });
  });
  return out;
}

// ---- concatenation ------------------------------------------------------------------------------

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  PT_CHECK(!xs.empty(), "cat: no tensors given");
  const Tensor& first = xs[0];
  checks::defined("cat", first, "xs[0]");
  int64_t d = normalize_dim(dim, first.dim(), "cat");
  Shape s = first.shape();
  int64_t total = 0;
  for (const Tensor& x : xs) {
    checks::defined("cat", x, "xs[i]");
    checks::same_device("cat", {&first, &x});
    checks::same_dtype("cat", first, x);
    PT_CHECK(x.dim() == first.dim(), "cat: ranks differ: ", first.describe(), " and ", x.describe());
    for (int64_t i = 0; i < x.dim(); ++i)
      PT_CHECK(i == d || x.size(i) == first.size(i), "cat: shapes ", first.describe(), " and ", x.describe(),
               " differ outside dim ", d);
    total += x.size(d);
  }
  s[d] = total;
  Tensor out = Tensor::empty(s, first.dtype(), first.device());
  int64_t at = 0;
  for (const Tensor& x : xs) {
    out.narrow(d, at, x.size(d)).copy_(x);
    at += x.size(d);
  }
  return out;
}

}  // namespace pt
