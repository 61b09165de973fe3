// Matrix products: OpenBLAS on the CPU, cuBLAS on CUDA (matmul.cu).
// The public ops validate shapes, then bring every product into one canonical form that both devices
// consume: C as [batch, M, N] with unit column stride, A and B as 3-D [batch, rows, cols] views whose
// matrices are stored either row-major (strides ld, 1) or column-major (1, ld) with one stride per
// batch (an operand with batch 1 is shared by every batch). Views that fit are used in place, others
// are copied once; the device code only reads strides.
#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <climits>

#include "tensor/ops.h"
#include "tensor/ops/checks.h"
#include "tensor/ops/cuda_ops.h"

namespace pt {
namespace {

std::atomic<bool> g_allow_tf32{false};

// BLAS form of a [rows, cols] matrix with strides (s_row, s_col): row-major (ld, 1) or column-major
// (1, ld). Strides of size-1 dims never matter, so they are set to values BLAS accepts.
bool blas_strides(int64_t rows, int64_t cols, int64_t s_row, int64_t s_col, int64_t& out_row, int64_t& out_col) {
  const int64_t min_ld_row = std::max<int64_t>(1, cols), min_ld_col = std::max<int64_t>(1, rows);
  if ((cols <= 1 || s_col == 1) && (rows <= 1 || s_row >= min_ld_row)) {
    out_row = rows <= 1 ? min_ld_row : s_row;
    out_col = 1;
    return true;
  }
  if ((rows <= 1 || s_row == 1) && (cols <= 1 || s_col >= min_ld_col)) {
    out_row = 1;
    out_col = cols <= 1 ? min_ld_col : s_col;
    return true;
  }
  return false;
}

// One stride that walks all `nb` leading (batch) dims in row-major order, if the view has one.
bool batch_stride(const Tensor& t, int64_t nb, int64_t& stride) {
  stride = 0;
  int64_t extent = 0;  // elements of the inner batch dims seen so far (0: none yet)
  for (int64_t d = nb - 1; d >= 0; --d) {
    if (t.size(d) == 1) continue;
    if (extent == 0) {
      stride = t.stride(d);
      extent = t.size(d);
    } else {
      if (t.stride(d) != stride * extent) return false;
      extent *= t.size(d);
    }
  }
  return true;
}

int64_t batch_count(const Tensor& t) {
  int64_t n = 1;
  for (int64_t d = 0; d + 2 < t.dim(); ++d) n *= t.size(d);
  return n;
}

// t ([..., rows, cols], no empty dims) as a 3-D BLAS-form view; copies only when it must.
Tensor blas_view(const Tensor& t) {
  const int64_t rows = t.size(-2), cols = t.size(-1);
  int64_t sb, sr, sc;
  if (batch_stride(t, t.dim() - 2, sb) && blas_strides(rows, cols, t.stride(-2), t.stride(-1), sr, sc))
    return t.as_strided({batch_count(t), rows, cols}, {sb, sr, sc}, t.offset());
  Tensor c = t.contiguous();
  return c.as_strided({batch_count(c), rows, cols}, {rows * cols, cols, 1}, c.offset());
}

// C as a 3-D row-major view (unit column stride), or undefined when C must go through a temporary.
Tensor output_view(const Tensor& c) {
  const int64_t rows = c.size(-2), cols = c.size(-1);
  int64_t sb;
  if (!batch_stride(c, c.dim() - 2, sb)) return Tensor();
  if (!(cols <= 1 || c.stride(-1) == 1) || !(rows <= 1 || c.stride(-2) >= cols)) return Tensor();
  return c.as_strided({batch_count(c), rows, cols}, {sb, rows <= 1 ? cols : c.stride(-2), 1}, c.offset());
}

// Storage layout of a BLAS-form operand: leading dimension and whether BLAS must transpose it.
struct Layout {
  int64_t ld;
  bool trans;
};
Layout layout_of(const Tensor& t3, bool trans) {
  const bool row_major = t3.stride(2) == 1 && t3.stride(1) >= std::max<int64_t>(1, t3.size(2));
  if (row_major) return {t3.stride(1), trans};
  return {t3.stride(2), !trans};  // column-major storage is the transpose of a row-major matrix
}

void blas_gemm(bool ta, bool tb, int m, int n, int k, double alpha, const float* a, int lda, const float* b,
               int ldb, double beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k,
              float(alpha), a, lda, b, ldb, float(beta), c, ldc);
}
void blas_gemm(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
               int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
              lda, b, ldb, beta, c, ldc);
}

// One output row (a single token through a Linear, a decode step): a matrix-vector product. BLAS's gemm would
// first pack all of B, which for a weight read once costs more than the product itself.
void blas_gemv_row(bool ta, bool tb, int n, int k, double alpha, const float* a, int lda, const float* b, int ldb,
                   double beta, float* c) {
  // c[n] = alpha * op(b)ᵀ-product with the row op(a)[k]; op(a)'s k elements are a[i] (no trans) or a[i*lda] (trans).
  cblas_sgemv(CblasRowMajor, tb ? CblasNoTrans : CblasTrans, tb ? n : k, tb ? k : n, float(alpha), b, ldb, a,
              ta ? lda : 1, float(beta), c, 1);
}
void blas_gemv_row(bool ta, bool tb, int n, int k, double alpha, const double* a, int lda, const double* b, int ldb,
                   double beta, double* c) {
  cblas_dgemv(CblasRowMajor, tb ? CblasNoTrans : CblasTrans, tb ? n : k, tb ? k : n, alpha, b, ldb, a,
              ta ? lda : 1, beta, c, 1);
}

template <class T>
void cpu_gemm(const Tensor& c3, const Tensor& a3, const Tensor& b3, bool ta, bool tb, double alpha, double beta) {
  const int64_t batch = c3.size(0), m = c3.size(1), n = c3.size(2), k = ta ? a3.size(1) : a3.size(2);
  const Layout la = layout_of(a3, ta), lb = layout_of(b3, tb);
  const int64_t sa = a3.size(0) == 1 ? 0 : a3.stride(0), sb = b3.size(0) == 1 ? 0 : b3.stride(0);
  const T* pa = a3.data<T>();
  const T* pb = b3.data<T>();
  T* pc = c3.data<T>();
  for (int64_t i = 0; i < batch; ++i) {
    if (m == 1)
      blas_gemv_row(la.trans, lb.trans, int(n), int(k), alpha, pa + i * sa, int(la.ld), pb + i * sb, int(lb.ld), beta,
                    pc + i * c3.stride(0));
    else
      blas_gemm(la.trans, lb.trans, int(m), int(n), int(k), alpha, pa + i * sa, int(la.ld), pb + i * sb, int(lb.ld),
                beta, pc + i * c3.stride(0), int(c3.stride(1)));
  }
}

void check_blas_limits(const char* op, std::initializer_list<int64_t> values) {
  for (int64_t v : values)
    PT_CHECK(v <= INT_MAX, op, ": dimension or stride ", v, " exceeds the 32-bit BLAS limit");
}

// C = alpha*op(A)*op(B) + beta*C for validated shapes (C: [..., M, N]; B may be 2-D and shared).
void gemm_impl(const Tensor& c, const Tensor& a, const Tensor& b, bool ta, bool tb, double alpha, double beta) {
  if (c.numel() == 0) return;
  const int64_t k = ta ? a.size(-2) : a.size(-1);
  if (k == 0) {  // empty product: BLAS libraries disagree on k = 0, so scale C here
    if (beta == 0.0) Tensor(c).zero_();  // a handle copy: same storage
    else unary_(c, c, UnaryOp::mul_scalar, beta);
    return;
  }
  Tensor c3 = output_view(c), tmp;
  if (!c3.defined()) {  // C's strides do not fit BLAS: compute in a contiguous temporary
    tmp = beta == 0.0 ? Tensor::empty(c.shape(), c.dtype(), c.device()) : c.clone();
    c3 = output_view(tmp);
  }
  Tensor a3 = blas_view(a), b3 = blas_view(b);
  // A shared B with a row-major, densely batched A and C is one big product: fold batch into M.
  const int64_t m = c3.size(1);
  if (b3.size(0) == 1 && c3.size(0) > 1 && !ta && a3.stride(2) == 1 && a3.stride(0) == m * a3.stride(1) &&
      c3.stride(0) == m * c3.stride(1)) {
    a3 = a3.as_strided({1, c3.size(0) * m, a3.size(2)}, {0, a3.stride(1), 1}, a3.offset());
    c3 = c3.as_strided({1, c3.size(0) * m, c3.size(2)}, {0, c3.stride(1), 1}, c3.offset());
  }
  check_blas_limits("gemm", {c3.size(0), c3.size(1), c3.size(2), k, c3.stride(1), a3.stride(1), a3.stride(2),
                             b3.stride(1), b3.stride(2)});
  PT_DISPATCH_CUDA(c, cuda_ops::gemm(c3, a3, b3, ta, tb, alpha, beta))
  else if (c.dtype() == DType::f32) cpu_gemm<float>(c3, a3, b3, ta, tb, alpha, beta);
  else cpu_gemm<double>(c3, a3, b3, ta, tb, alpha, beta);
  if (tmp.defined()) Tensor(c).copy_(tmp);
}

struct ProductShape {
  int64_t m, k, n;
  Shape out;
};

// Validates op(A)·op(B) (shared checks of matmul and gemm_) and returns M, K, N and the output shape.
ProductShape product_shape(const char* op, const Tensor& a, const Tensor& b, bool ta, bool tb) {
  checks::defined(op, a, "a");
  checks::defined(op, b, "b");
  checks::same_device(op, {&a, &b});
  checks::same_dtype(op, a, b);
  checks::float_dtype(op, a);
  PT_CHECK(a.dim() >= 2 && b.dim() >= 2, op, ": operands need at least 2 dims, got a ", a.describe(), " and b ",
           b.describe());
  ProductShape p;
  p.m = ta ? a.size(-1) : a.size(-2);
  p.k = ta ? a.size(-2) : a.size(-1);
  const int64_t kb = tb ? b.size(-1) : b.size(-2);
  p.n = tb ? b.size(-2) : b.size(-1);
  PT_CHECK(p.k == kb, op, ": inner dimensions differ: a ", a.describe(), (ta ? " (transposed)" : ""), " gives K=",
           p.k, " but b ", b.describe(), (tb ? " (transposed)" : ""), " gives K=", kb);
  bool batch_ok = b.dim() == 2 || a.dim() == b.dim();
  for (int64_t d = 0; batch_ok && b.dim() > 2 && d + 2 < a.dim(); ++d) batch_ok = a.size(d) == b.size(d);
  PT_CHECK(batch_ok, op, ": batch dims of a ", a.describe(), " and b ", b.describe(),
           " must be equal (or b must be 2-D and shared)");
  p.out.assign(a.shape().begin(), a.shape().end() - 2);
  p.out.push_back(p.m);
  p.out.push_back(p.n);
  return p;
}

}  // namespace

void set_allow_tf32(bool allow) { g_allow_tf32.store(allow); }
bool allow_tf32() { return g_allow_tf32.load(); }

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  ProductShape p = product_shape("matmul", a, b, trans_a, trans_b);
  Tensor c = Tensor::empty(p.out, a.dtype(), a.device());
  gemm_impl(c, a, b, trans_a, trans_b, 1.0, 0.0);
  return c;
}

void gemm_(const Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, double alpha,
           double beta) {
  checks::defined("gemm_", c, "c");
  ProductShape p = product_shape("gemm_", a, b, trans_a, trans_b);
  checks::same_device("gemm_", {&c, &a});
  checks::same_dtype("gemm_", c, a);
  PT_CHECK(c.shape() == p.out, "gemm_: c ", c.describe(), " should have shape ", shape_str(p.out), " for a ",
           a.describe(), " and b ", b.describe());
  gemm_impl(c, a, b, trans_a, trans_b, alpha, beta);
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  checks::defined("linear", x, "x");
  checks::defined("linear", weight, "weight");
  checks::rank("linear", weight, 2, "weight");
  checks::same_device("linear", {&x, &weight});
  checks::same_dtype("linear", x, weight);
  checks::float_dtype("linear", x);
  PT_CHECK(x.dim() >= 1, "linear: x must have at least 1 dim, got ", x.describe());
  const int64_t in = weight.size(1), out = weight.size(0);
  PT_CHECK(x.size(-1) == in, "linear: x ", x.describe(), " has ", x.size(-1), " features but weight ",
           weight.describe(), " expects ", in);
  if (bias.defined()) {
    checks::rank("linear", bias, 1, "bias");
    checks::same_device("linear", {&x, &bias});
    checks::same_dtype("linear", x, bias);
    PT_CHECK(bias.size(0) == out, "linear: bias ", bias.describe(), " should have ", out, " elements for weight ",
             weight.describe());
  }
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < x.dim(); ++d) rows *= x.size(d);
  Shape out_shape = x.shape();
  out_shape.back() = out;
  Tensor y = Tensor::empty({rows, out}, x.dtype(), x.device());
  // The bias is fused as the initial C of the product (beta = 1).
  if (bias.defined()) y.copy_(bias);
  gemm_impl(y, x.reshape({rows, in}), weight, false, true, 1.0, bias.defined() ? 1.0 : 0.0);
  return y.view(out_shape);
}

void syrk_(const Tensor& h, const Tensor& x, double alpha, double beta) {
  checks::defined("syrk_", h, "h");
  checks::defined("syrk_", x, "x");
  checks::same_device("syrk_", {&h, &x});
  checks::same_dtype("syrk_", h, x);
  checks::dtype_in("syrk_", h, {DType::f32, DType::f64});
  checks::rank("syrk_", h, 2, "h");
  checks::rank("syrk_", x, 2, "x");
  const int64_t n = x.size(0), d = x.size(1);
  PT_CHECK(h.size(0) == d && h.size(1) == d, "syrk_: h ", h.describe(), " should be [", d, ", ", d, "] for x ",
           x.describe());
  if (d == 0) return;
  if (n == 0) {
    if (beta == 0.0) Tensor(h).zero_();
    else unary_(h, h, UnaryOp::mul_scalar, beta);
    return;
  }
  Tensor h3 = output_view(h), tmp;
  if (!h3.defined()) {
    tmp = beta == 0.0 ? Tensor::empty(h.shape(), h.dtype(), h.device()) : h.clone();
    h3 = output_view(tmp);
  }
  Tensor h2 = h3.select(0, 0), x2 = blas_view(x).select(0, 0);
  check_blas_limits("syrk_", {n, d, h2.stride(0), x2.stride(0), x2.stride(1)});
  PT_DISPATCH_CUDA(h, cuda_ops::syrk(h2, x2, alpha, beta))
  else {
    // Row-major X stored as is: H = Xᵀ·X (Trans). Column-major storage is Y = Xᵀ row-major: H = Y·Yᵀ.
    const bool row_major = x2.stride(1) == 1 && x2.stride(0) >= d;
    const CBLAS_TRANSPOSE tr = row_major ? CblasTrans : CblasNoTrans;
    const int ldx = int(row_major ? x2.stride(0) : x2.stride(1)), ldh = int(h2.stride(0));
    if (h.dtype() == DType::f32) {
      cblas_ssyrk(CblasRowMajor, CblasUpper, tr, int(d), int(n), float(alpha), x2.data<float>(), ldx, float(beta),
                  h2.data<float>(), ldh);
    } else {
      cblas_dsyrk(CblasRowMajor, CblasUpper, tr, int(d), int(n), alpha, x2.data<double>(), ldx, beta,
                  h2.data<double>(), ldh);
    }
  }
  if (tmp.defined()) Tensor(h).copy_(tmp);
}

}  // namespace pt
