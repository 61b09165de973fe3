// CUDA side of the CSR format: y = x·Wᵀ + b through cuSPARSE's generic SpMM.
//
// cuSPARSE multiplies a sparse A by a dense B. With W [out, in] as A we compute Yᵀ = W·Xᵀ:
//   B = Xᵀ [in × tokens] column-major with ld = in   — exactly the row-major X [tokens, in] in place;
//   C = Yᵀ [out × tokens] column-major with ld = out — exactly the row-major Y [tokens, out] in place.
// The bias is written into every row of Y first (a small kernel) and SpMM then runs with beta = 1.
// Values and X / Y share one dtype (f32, f16 or bf16); products accumulate in f32 (compute type CUDA_R_32F).
//
// The descriptors, the workspace size query, the workspace and cusparseSpMM_preprocess (which analyses W once
// for the SpMM calls after it) are per weight and token count, not per call: they live in the weight's
// CsrSpmmPlans. A forward only points the dense descriptors at this call's X and Y and runs SpMM.
#include <cusparse.h>

#include <mutex>

#include "sparse/plan_cache.h"
#include "sparse/sparse_cuda.h"
#include "tensor/ops/cuda_common.cuh"

#define PT_CUSPARSE_CHECK(expr)                                                                       \
  do {                                                                                                \
    cusparseStatus_t pt_st_ = (expr);                                                                 \
    if (pt_st_ != CUSPARSE_STATUS_SUCCESS)                                                            \
      ::pt::detail::throw_error(__FILE__, __LINE__,                                                   \
                                ::pt::detail::concat(#expr, " failed: ", cusparseGetErrorName(pt_st_), \
                                                     " (", cusparseGetErrorString(pt_st_), ")"));     \
  } while (0)

namespace pt::sparse::cuda_kernels {

namespace {

// One cuSPARSE handle per host thread, created on first use and re-bound to the current stream on every
// request (cheap). Like the cuBLAS handles in tensor/cuda/cuda_context.cpp it is not destroyed at thread
// exit: destroying handles during process teardown can race the driver's own shutdown.
cusparseHandle_t cusparse_handle() {
  thread_local cusparseHandle_t handle = nullptr;
  if (handle == nullptr) PT_CUSPARSE_CHECK(cusparseCreate(&handle));
  PT_CUSPARSE_CHECK(cusparseSetStream(handle, pt::cuda::current_stream()));
  return handle;
}

cudaDataType cusparse_value_type(DType t) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    default:
      PT_FAIL("csr_linear: dtype ", dtype_name(t), " not supported on cuda (allowed: f32, f16, bf16)");
  }
}

}  // namespace

// One token count: Xᵀ and Yᵀ descriptors (re-pointed at each call's X and Y) and the preprocessed workspace.
struct CsrSpmmPlan {
  cusparseDnMatDescr_t x = nullptr, y = nullptr;
  Tensor workspace;
  CsrSpmmPlan() = default;
  CsrSpmmPlan(const CsrSpmmPlan&) = delete;
  CsrSpmmPlan& operator=(const CsrSpmmPlan&) = delete;
  ~CsrSpmmPlan() {
    if (x) cusparseDestroyDnMat(x);
    if (y) cusparseDestroyDnMat(y);
  }
};

struct PlanKey {
  int64_t tokens;
  bool bias;  // beta = 1 (bias pre-filled) or 0: the preprocessing is for one beta
  bool operator==(const PlanKey&) const = default;
};

constexpr size_t kMaxPlans = 8;  // token counts kept per weight

struct CsrSpmmPlans {
  std::mutex mutex;  // host-side bookkeeping; the device work is stream-ordered
  cusparseConstSpMatDescr_t w = nullptr;
  PlanCache<PlanKey, std::unique_ptr<CsrSpmmPlan>> plans{kMaxPlans};
  CsrSpmmPlans() = default;
  CsrSpmmPlans(const CsrSpmmPlans&) = delete;
  CsrSpmmPlans& operator=(const CsrSpmmPlans&) = delete;
  ~CsrSpmmPlans() {
    if (w) cusparseDestroySpMat(w);
  }
};

namespace {

// y[t, o] = bias[o] for every token row of y [tokens, out].
template <class T>
__global__ void fill_rows_with_bias(T* __restrict__ y, const T* __restrict__ bias, int64_t tokens, int64_t out) {
  const int64_t n = tokens * out;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = bias[i % out];
}

}  // namespace

void csr_linear(const Tensor& out, const Tensor& x2, const CsrWeight& w, const Tensor& bias) {
  PT_NVTX_RANGE("sparse/csr_linear");
  const DType dt = w.values.dtype();
  const cudaDataType vt = cusparse_value_type(dt);
  const int64_t tokens = x2.size(0), in = w.in_features(), n_out = w.out_features(), nnz = w.nnz();
  PT_CHECK(x2.is_cuda() && out.is_cuda() && w.values.is_cuda(), "csr_linear: tensors must be on cuda");
  PT_CHECK(x2.dim() == 2 && x2.size(1) == in && x2.is_contiguous() && x2.dtype() == dt, "csr_linear: x must be a ",
           "contiguous ", dtype_name(dt), " [tokens, ", in, "] matrix, got ", x2.describe());
  PT_CHECK(out.dim() == 2 && out.size(0) == tokens && out.size(1) == n_out && out.is_contiguous() && out.dtype() == dt,
           "csr_linear: out must be a contiguous ", dtype_name(dt), " [", tokens, ", ", n_out, "] matrix, got ",
           out.describe());
  PT_CHECK(!bias.defined() || (bias.numel() == n_out && bias.is_contiguous() && bias.dtype() == dt && bias.is_cuda()),
           "csr_linear: bias must be a contiguous ", dtype_name(dt), " [", n_out, "] vector, got ", bias.describe());
  if (tokens == 0 || n_out == 0) return;
  cudaStream_t stream = pt::cuda::current_stream();

  if (bias.defined()) {
    pt::cuda::dispatch_float(dt, "csr_linear", [&]<class T>() {
      fill_rows_with_bias<T><<<pt::cuda::grid_for(tokens * n_out), pt::cuda::kThreads, 0, stream>>>(
          static_cast<T*>(out.data_ptr()), static_cast<const T*>(bias.data_ptr()), tokens, n_out);
    });
    PT_CUDA_CHECK_LAUNCH();
  }
  if (nnz == 0) {  // no kept weights: y = bias (filled above) or 0; cuSPARSE is not needed
    if (!bias.defined()) PT_CUDA_CHECK(cudaMemsetAsync(out.data_ptr(), 0, out.nbytes(), stream));
    return;
  }

  cusparseHandle_t handle = cusparse_handle();
  if (!w.spmm_plans) w.spmm_plans = std::make_shared<CsrSpmmPlans>();
  CsrSpmmPlans& state = *w.spmm_plans;
  const std::lock_guard<std::mutex> lock(state.mutex);
  if (state.w == nullptr)
    PT_CUSPARSE_CHECK(cusparseCreateConstCsr(&state.w, n_out, in, nnz, w.row_offsets.data_ptr(),
                                             w.col_indices.data_ptr(), w.values.data_ptr(), CUSPARSE_INDEX_32I,
                                             CUSPARSE_INDEX_32I, CUSPARSE_INDEX_BASE_ZERO, vt));
  const float alpha = 1.0f, beta = bias.defined() ? 1.0f : 0.0f;
  // Xᵀ [in × tokens], column-major, ld = in: the row-major x2 as it lies. Yᵀ [out × tokens], ld = out: likewise.
  void* x_ptr = const_cast<void*>(x2.data_ptr());
  CsrSpmmPlan& plan = *state.plans.get(PlanKey{tokens, bias.defined()}, [&] {
    auto p = std::make_unique<CsrSpmmPlan>();
    PT_CUSPARSE_CHECK(cusparseCreateDnMat(&p->x, in, tokens, in, x_ptr, vt, CUSPARSE_ORDER_COL));
    PT_CUSPARSE_CHECK(cusparseCreateDnMat(&p->y, n_out, tokens, n_out, out.data_ptr(), vt, CUSPARSE_ORDER_COL));
    size_t bytes = 0;
    PT_CUSPARSE_CHECK(cusparseSpMM_bufferSize(handle, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                              CUSPARSE_OPERATION_NON_TRANSPOSE, &alpha, state.w, p->x, &beta, p->y,
                                              CUDA_R_32F, CUSPARSE_SPMM_ALG_DEFAULT, &bytes));
    p->workspace = Tensor::empty({int64_t(bytes > 0 ? bytes : 1)}, DType::u8, Device::cuda);
    PT_CUSPARSE_CHECK(cusparseSpMM_preprocess(handle, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                              CUSPARSE_OPERATION_NON_TRANSPOSE, &alpha, state.w, p->x, &beta, p->y,
                                              CUDA_R_32F, CUSPARSE_SPMM_ALG_DEFAULT, p->workspace.data_ptr()));
    return p;
  });
  PT_CUSPARSE_CHECK(cusparseDnMatSetValues(plan.x, x_ptr));
  PT_CUSPARSE_CHECK(cusparseDnMatSetValues(plan.y, out.data_ptr()));
  PT_CUSPARSE_CHECK(cusparseSpMM(handle, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_OPERATION_NON_TRANSPOSE, &alpha,
                                 state.w, plan.x, &beta, plan.y, CUDA_R_32F, CUSPARSE_SPMM_ALG_DEFAULT,
                                 plan.workspace.data_ptr()));
  PT_CUDA_CHECK_LAUNCH();  // surfaces an asynchronous fault here when PT_SYNC_CHECK=1
}

int64_t csr_spmm_plans_built(const CsrWeight& w) {
  if (!w.spmm_plans) return 0;
  const std::lock_guard<std::mutex> lock(w.spmm_plans->mutex);
  return w.spmm_plans->plans.builds();
}

}  // namespace pt::sparse::cuda_kernels
