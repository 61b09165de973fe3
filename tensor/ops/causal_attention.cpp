#include "tensor/ops/causal_attention.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>

#include "tensor/ops/checks.h"
#include "tensor/ops/cpu_loops.h"
#include "tensor/ops/dispatch.h"
#include "tensor/ops/softmax_row.h"

namespace pt {
namespace {

constexpr int64_t kQueryBlock = 128;  // a block's scores (128 x Tk floats) stay in L2

void gemm(bool tb, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
}
void gemm(bool tb, int m, int n, int k, const double* a, int lda, const double* b, int ldb, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc);
}

// One head's queries, block by block, in the calling thread: the build's OpenBLAS is the OpenMP one, whose calls
// made inside a parallel region (the loop over heads below) run in the calling thread.
template <class T>
void attention_head(const T* qh, const T* kh, const T* vh, T* oh, T* scores, int64_t Tq, int64_t Tk, int64_t D,
                    int64_t ldo) {
  const int64_t shift = Tk - Tq;
  for (int64_t i0 = 0; i0 < Tq; i0 += kQueryBlock) {
    const int64_t rows = std::min(kQueryBlock, Tq - i0);
    const int64_t keys = std::clamp<int64_t>(i0 + rows + shift, 0, Tk);  // what the block's last query sees
    if (keys == 0) {  // no query of the block sees a key: all-zero rows, like the causal softmax
      for (int64_t r = 0; r < rows; ++r) std::fill(oh + (i0 + r) * ldo, oh + (i0 + r) * ldo + D, T(0));
      continue;
    }
    gemm(true, int(rows), int(keys), int(D), qh + i0 * D, int(D), kh, int(D), scores, int(keys));
    for (int64_t r = 0; r < rows; ++r)
      cpu::softmax_row(scores + r * keys, scores + r * keys, keys, std::clamp<int64_t>(i0 + r + shift + 1, 0, keys));
    gemm(false, int(rows), int(D), int(keys), scores, int(keys), vh, int(D), oh + i0 * ldo, int(ldo));
  }
}

}  // namespace

Tensor causal_attention_cpu(const Tensor& q, const Tensor& k, const Tensor& v) {
  const char* op = "causal_attention_cpu";
  for (const Tensor* t : {&q, &k, &v}) {
    checks::defined(op, *t, "q/k/v");
    PT_CHECK(t->dim() == 4 && t->is_contiguous() && !t->is_cuda(), op, ": q, k, v must be contiguous CPU tensors "
             "[B, H, T, D], got ", t->describe());
  }
  checks::same_dtype(op, q, k);
  checks::same_dtype(op, q, v);
  PT_CHECK(k.shape() == v.shape() && q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3), op,
           ": q ", q.describe(), ", k ", k.describe(), " and v ", v.describe(), " do not fit together");
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), D = q.size(3);
  Tensor out = Tensor::empty({B, Tq, H * D}, q.dtype(), Device::cpu);
  if (out.numel() == 0) return out;
  const int64_t block = std::min(kQueryBlock, Tq), threads = omp_get_max_threads();
  Tensor scores = Tensor::empty({threads, block, std::max<int64_t>(Tk, 1)}, q.dtype(), Device::cpu);
  dispatch_cpu_float(q.dtype(), op, [&]<class T>() {
    const T *pq = q.data<T>(), *pk = k.data<T>(), *pv = v.data<T>();
    T* po = out.data<T>();
    T* ps = scores.data<T>();
#pragma omp parallel for schedule(static)
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      attention_head<T>(pq + bh * Tq * D, pk + bh * Tk * D, pv + bh * Tk * D, po + b * Tq * H * D + h * D,
                        ps + int64_t(omp_get_thread_num()) * block * std::max<int64_t>(Tk, 1), Tq, Tk, D, H * D);
    }
  });
  return out;
}

}  // namespace pt
