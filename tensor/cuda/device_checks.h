// Device-side index checks (the bookkeeping and its key format are in tensor/cuda/deferred_checks.h).
//
// An op that validates indices on the GPU calls begin_index_check(...) before its launch and passes the
// returned DeviceIndexCheck to its kernel; the kernel calls report_bad_index(check, position) for each bad
// index it meets (and must not use that index). Nothing is read back at the op: pt::cuda::synchronize(), which
// every host read of a device result goes through (Tensor::to, item, to_vector, cuSOLVER status words), copies
// the check word in the same stream round trip and throws the first failure, naming the op and the bad value.
// With PT_SYNC_CHECK=1 every launch synchronises, so a failure is reported at its own op.
//
// Checks of one host thread share one device word and one stream; a check launched on another stream first
// reports the pending ones (a synchronisation, only when streams are mixed).
#pragma once
#include <cuda_runtime.h>

#include "tensor/cuda/deferred_checks.h"

namespace pt::cuda {

struct DeviceIndexCheck {
  unsigned long long* word;  // device
  unsigned long long tag;
};

#if defined(__CUDACC__)
__device__ __forceinline__ void report_bad_index(DeviceIndexCheck check, int64_t position) {
  atomicMin(check.word, (unsigned long long)check_key(check.tag, position));
}
#endif

// Registers a check over `positions` flat positions, for a kernel about to run on current_stream().
DeviceIndexCheck begin_index_check(int64_t positions, DeferredIndexChecks::Describe describe);

// Waits for `stream`; if checks are pending, first queues the copy of the check word (and its reset) on their
// stream, then throws the first failure. pt::cuda::synchronize() is this for the current stream.
void synchronize_and_report(cudaStream_t stream);

}  // namespace pt::cuda
