// Checked CUDA / cuBLAS / cuSOLVER calls: a failure throws pt::Error with the call, the library's
// error name and file:line. PT_CUDA_CHECK_LAUNCH() follows every kernel launch; with the environment
// variable PT_SYNC_CHECK=1 it also synchronises so an asynchronous fault is reported at its launch.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include "tensor/error.h"

namespace pt::cuda {
const char* cublas_status_name(cublasStatus_t s);
const char* cusolver_status_name(cusolverStatus_t s);
bool sync_check_enabled();
void check_launch(const char* file, int line);
}  // namespace pt::cuda

#define PT_CUDA_CHECK(expr)                                                                      \
  do {                                                                                           \
    cudaError_t pt_err_ = (expr);                                                                \
    if (pt_err_ != cudaSuccess)                                                                  \
      ::pt::detail::throw_error(__FILE__, __LINE__,                                              \
                                ::pt::detail::concat(#expr, " failed: ", cudaGetErrorName(pt_err_), \
                                                     " (", cudaGetErrorString(pt_err_), ")"));   \
  } while (0)
#define PT_CUBLAS_CHECK(expr)                                                                    \
  do {                                                                                           \
    cublasStatus_t pt_st_ = (expr);                                                              \
    if (pt_st_ != CUBLAS_STATUS_SUCCESS)                                                         \
      ::pt::detail::throw_error(__FILE__, __LINE__, ::pt::detail::concat(#expr, " failed: ",     \
                                ::pt::cuda::cublas_status_name(pt_st_)));                        \
  } while (0)
#define PT_CUSOLVER_CHECK(expr)                                                                  \
  do {                                                                                           \
    cusolverStatus_t pt_st_ = (expr);                                                            \
    if (pt_st_ != CUSOLVER_STATUS_SUCCESS)                                                       \
      ::pt::detail::throw_error(__FILE__, __LINE__, ::pt::detail::concat(#expr, " failed: ",     \
                                ::pt::cuda::cusolver_status_name(pt_st_)));                      \
  } while (0)
#define PT_CUDA_CHECK_LAUNCH() ::pt::cuda::check_launch(__FILE__, __LINE__)
