#include "tensor/cuda/device_checks.h"

#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/cuda_context.h"

namespace pt::cuda {
namespace {

// Per host thread: the device word the kernels write, a pinned host copy of it, and the pending checks. The
// buffers live as long as the thread's CUDA work may (like the library handles, they are never freed).
struct CheckState {
  unsigned long long* device_word = nullptr;
  unsigned long long* host_word = nullptr;
  cudaStream_t stream = nullptr;  // of the pending checks
  DeferredIndexChecks checks;
};
thread_local CheckState t_checks;

CheckState& state() {
  CheckState& s = t_checks;
  if (s.device_word == nullptr) {
    PT_CUDA_CHECK(cudaMalloc(&s.device_word, sizeof(unsigned long long)));
    // kNoFailure, ordered before the first check's kernel on the stream it runs on
    PT_CUDA_CHECK(cudaMemsetAsync(s.device_word, 0xFF, sizeof(unsigned long long), current_stream()));
    PT_CUDA_CHECK(cudaMallocHost(&s.host_word, sizeof(unsigned long long)));
  }
  return s;
}

}  // namespace

DeviceIndexCheck begin_index_check(int64_t positions, DeferredIndexChecks::Describe describe) {
  CheckState& s = state();
  const cudaStream_t stream = current_stream();
  if (!s.checks.empty() && (s.checks.full() || s.stream != stream)) synchronize_and_report(s.stream);
  s.stream = stream;
  return {s.device_word, s.checks.add(positions, std::move(describe))};
}

void synchronize_and_report(cudaStream_t stream) {
  CheckState& s = t_checks;
  if (s.checks.empty()) {
    PT_CUDA_CHECK(cudaStreamSynchronize(stream));
    return;
  }
  // Stream-ordered after every pending check: read the word, reset it for the next round.
  PT_CUDA_CHECK(cudaMemcpyAsync(s.host_word, s.device_word, sizeof(unsigned long long), cudaMemcpyDeviceToHost,
                                s.stream));
  PT_CUDA_CHECK(cudaMemsetAsync(s.device_word, 0xFF, sizeof(unsigned long long), s.stream));
  PT_CUDA_CHECK(cudaStreamSynchronize(s.stream));
  if (stream != s.stream) PT_CUDA_CHECK(cudaStreamSynchronize(stream));
  const std::string failure = s.checks.take_failure(*s.host_word);  // clears the pending checks
  if (!failure.empty()) PT_FAIL(failure);
}

}  // namespace pt::cuda
