// Per-process CUDA state: the current stream and the cuBLAS / cuSOLVER handles bound to it.
// Ops launch on current_stream(); StreamGuard switches it for a scope (streams are passed explicitly
// to every launcher below this level).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

namespace pt::cuda {

cudaStream_t current_stream();
void set_current_stream(cudaStream_t s);
cublasHandle_t cublas_handle();      // bound to current_stream(); math mode follows allow_tf32()
cusolverDnHandle_t cusolver_handle();  // bound to current_stream()
cusolverDnParams_t cusolver_params();  // default options of the 64-bit cuSOLVER API (cusolverDnX*)
// Waits for current_stream(), then reports the device-side checks of the ops launched since the last report
// (tensor/cuda/device_checks.h): the first failure is thrown here as a pt::Error. Every host synchronisation of
// the ops goes through here.
void synchronize();
int compute_capability_major();      // of the current device (cached per host thread and device)

class StreamGuard {
 public:
  explicit StreamGuard(cudaStream_t s) : prev_(current_stream()) { set_current_stream(s); }
  ~StreamGuard() { set_current_stream(prev_); }
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;
 private:
  cudaStream_t prev_;
};

// Element-count helpers for launch configuration.
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace pt::cuda
