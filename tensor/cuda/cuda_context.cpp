#include "tensor/cuda/cuda_context.h"

#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/device_checks.h"
#include "tensor/ops.h"

namespace pt::cuda {

namespace {
// One stream per thread (the legacy default stream unless set); handles are created lazily and
// re-bound to the current stream on every request, which is cheap.
thread_local cudaStream_t t_stream = nullptr;

struct Handles {
  cublasHandle_t cublas = nullptr;
  cusolverDnHandle_t cusolver = nullptr;
  cusolverDnParams_t cusolver_params = nullptr;
  ~Handles() {
    // Destroying handles at process exit can race the driver's own teardown; skip it.
  }
};
thread_local Handles t_handles;
}  // namespace

cudaStream_t current_stream() { return t_stream; }
void set_current_stream(cudaStream_t s) { t_stream = s; }

cublasHandle_t cublas_handle() {
  if (!t_handles.cublas) PT_CUBLAS_CHECK(cublasCreate(&t_handles.cublas));
  PT_CUBLAS_CHECK(cublasSetStream(t_handles.cublas, t_stream));
  // TF32 off unless asked for: fp32 products then match the CPU reference to ~1e-6.
  PT_CUBLAS_CHECK(cublasSetMathMode(t_handles.cublas, allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  return t_handles.cublas;
}

cusolverDnHandle_t cusolver_handle() {
  if (!t_handles.cusolver) PT_CUSOLVER_CHECK(cusolverDnCreate(&t_handles.cusolver));
  PT_CUSOLVER_CHECK(cusolverDnSetStream(t_handles.cusolver, t_stream));
  return t_handles.cusolver;
}

cusolverDnParams_t cusolver_params() {
  if (!t_handles.cusolver_params) PT_CUSOLVER_CHECK(cusolverDnCreateParams(&t_handles.cusolver_params));
  return t_handles.cusolver_params;
}

void synchronize() { synchronize_and_report(t_stream); }

int compute_capability_major() {
  thread_local int cached_device = -1, cached_major = 0;
  int dev = 0;
  PT_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev != cached_device) {
    PT_CUDA_CHECK(cudaDeviceGetAttribute(&cached_major, cudaDevAttrComputeCapabilityMajor, dev));
    cached_device = dev;
  }
  return cached_major;
}

}  // namespace pt::cuda
