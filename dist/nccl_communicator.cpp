// NCCL collectives on CUDA tensors, bootstrapped over MPI, watched by a thread that ends the run when one stalls.
#include "dist/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/cuda_context.h"
#include "tensor/error.h"

namespace pt::dist {
namespace {

using Clock = std::chrono::steady_clock;

#define PT_NCCL_CHECK(expr)                                                                          \
  do {                                                                                               \
    ncclResult_t pt_nccl_ = (expr);                                                                  \
    if (pt_nccl_ != ncclSuccess) PT_FAIL(#expr, " failed: ", ncclGetErrorString(pt_nccl_));          \
  } while (0)

ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::f16: return ncclFloat16;
    case DType::bf16: return ncclBfloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::u8: return ncclUint8;
  }
  return ncclUint8;
}

class NcclPending final : public PendingCollective {
 public:
  explicit NcclPending(cudaEvent_t done) : done_(done) {}
  ~NcclPending() override {
    if (done_) {
      cudaStreamWaitEvent(cuda::current_stream(), done_, 0);
      cudaEventDestroy(done_);  // released once the event has completed
    }
  }
  void wait() override {
    if (!done_) return;
    PT_CUDA_CHECK(cudaStreamWaitEvent(cuda::current_stream(), done_, 0));
    PT_CUDA_CHECK(cudaEventDestroy(done_));
    done_ = nullptr;
  }

 private:
  cudaEvent_t done_;
};

}  // namespace

struct NcclCommunicator::State {
  ncclComm_t comm = nullptr;
  cudaStream_t side = nullptr;  // the async collectives' stream
  int device = 0;
  std::string who;              // "rank 1 of 8 (NCCL)"
  std::atomic<int64_t> timeout_ms{0};  // the communicator's timeout(), read by the watchdog

  // The watchdog: an event after every collective, checked every 50 ms.
  struct Watched {
    cudaEvent_t done;
    Clock::time_point since;
    std::string what;
  };
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<Watched> watched;
  std::atomic<bool> stop{false};
  std::thread thread;

  void watch(cudaStream_t stream, const char* op, int64_t bytes) {
    cudaEvent_t ev = nullptr;
    PT_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    PT_CUDA_CHECK(cudaEventRecord(ev, stream));
    char what[96];
    std::snprintf(what, sizeof what, "%s of %.3g MB", op, double(bytes) / 1e6);
    std::lock_guard<std::mutex> lock(mutex);
    watched.push_back({ev, Clock::now(), what});
  }

  [[noreturn]] void fail(const std::string& why) {
    std::fprintf(stderr, "error: %s: %s: ending every rank\n", who.c_str(), why.c_str());
    std::fflush(stderr);
    ncclCommAbort(comm);
    std::_Exit(3);  // mpirun ends the other ranks when one exits without MPI_Finalize
  }

  void run() {
    cudaSetDevice(device);
    while (!stop.load()) {
      {
        std::unique_lock<std::mutex> lock(mutex);
        wake.wait_for(lock, std::chrono::milliseconds(50));
        while (!watched.empty()) {
          const cudaError_t q = cudaEventQuery(watched.front().done);
          if (q == cudaSuccess) {
            cudaEventDestroy(watched.front().done);
            watched.pop_front();
            continue;
          }
          if (q != cudaErrorNotReady) fail(watched.front().what + " failed: " + cudaGetErrorString(q));
          if (Clock::now() - watched.front().since > std::chrono::milliseconds(timeout_ms.load()))
            fail(watched.front().what + " has not completed within " + std::to_string(timeout_ms.load() / 1000) +
                 " s (PT_DIST_TIMEOUT); another rank has died or hung");
          break;
        }
      }
      ncclResult_t async = ncclSuccess;
      if (ncclCommGetAsyncError(comm, &async) == ncclSuccess && async != ncclSuccess && async != ncclInProgress)
        fail(std::string("NCCL reported ") + ncclGetErrorString(async));
    }
  }
};

NcclCommunicator::NcclCommunicator(std::unique_ptr<MpiCommunicator> bootstrap)
    : Communicator(bootstrap->rank(), bootstrap->size()), bootstrap_(std::move(bootstrap)),
      state_(std::make_unique<State>()) {
  State& s = *state_;
  PT_CUDA_CHECK(cudaGetDevice(&s.device));
  s.who = describe();
  s.timeout_ms = timeout().count();
  ncclUniqueId id{};
  if (rank() == 0) PT_NCCL_CHECK(ncclGetUniqueId(&id));
  bootstrap_->broadcast_bytes(&id, int64_t(sizeof id), 0);
  PT_NCCL_CHECK(ncclCommInitRank(&s.comm, size(), id, rank()));
  PT_CUDA_CHECK(cudaStreamCreateWithFlags(&s.side, cudaStreamNonBlocking));
  s.thread = std::thread([&s] { s.run(); });
}

NcclCommunicator::~NcclCommunicator() {
  State& s = *state_;
  cudaStreamSynchronize(s.side);
  cudaStreamSynchronize(cuda::current_stream());
  s.stop = true;
  s.wake.notify_all();
  if (s.thread.joinable()) s.thread.join();
  for (auto& w : s.watched) cudaEventDestroy(w.done);
  ncclCommDestroy(s.comm);
  cudaStreamDestroy(s.side);
}

void NcclCommunicator::abort(int code) {
  ncclCommAbort(state_->comm);
  bootstrap_->abort(code);
}

void NcclCommunicator::do_all_reduce_sum(const Tensor& t) {
  cudaStream_t stream = cuda::current_stream();
  state_->timeout_ms = timeout().count();
  PT_NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), size_t(t.numel()), nccl_type(t.dtype()), ncclSum,
                              state_->comm, stream));
  state_->watch(stream, "all_reduce_sum", t.nbytes());
}

std::unique_ptr<PendingCollective> NcclCommunicator::do_all_reduce_sum_async(const Tensor& t) {
  State& s = *state_;
  s.timeout_ms = timeout().count();
  cudaEvent_t ready = nullptr, done = nullptr;
  PT_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
  PT_CUDA_CHECK(cudaEventRecord(ready, cuda::current_stream()));  // the bucket's gradients are written
  PT_CUDA_CHECK(cudaStreamWaitEvent(s.side, ready, 0));
  PT_CUDA_CHECK(cudaEventDestroy(ready));
  PT_NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), size_t(t.numel()), nccl_type(t.dtype()), ncclSum, s.comm,
                              s.side));
  PT_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  PT_CUDA_CHECK(cudaEventRecord(done, s.side));
  s.watch(s.side, "all_reduce_sum (async)", t.nbytes());
  return std::make_unique<NcclPending>(done);
}

void NcclCommunicator::do_broadcast(const Tensor& t, int root) {
  cudaStream_t stream = cuda::current_stream();
  state_->timeout_ms = timeout().count();
  PT_NCCL_CHECK(ncclBroadcast(t.data_ptr(), t.data_ptr(), size_t(t.nbytes()), ncclUint8, root, state_->comm, stream));
  state_->watch(stream, "broadcast", t.nbytes());
}

void NcclCommunicator::do_all_gather(const Tensor& in, const Tensor& out) {
  cudaStream_t stream = cuda::current_stream();
  state_->timeout_ms = timeout().count();
  PT_NCCL_CHECK(ncclAllGather(in.data_ptr(), out.data_ptr(), size_t(in.nbytes()), ncclUint8, state_->comm, stream));
  state_->watch(stream, "all_gather", out.nbytes());
}

void NcclCommunicator::do_reduce_scatter_sum(const Tensor& in, const Tensor& out) {
  cudaStream_t stream = cuda::current_stream();
  state_->timeout_ms = timeout().count();
  PT_NCCL_CHECK(ncclReduceScatter(in.data_ptr(), out.data_ptr(), size_t(out.numel()), nccl_type(in.dtype()), ncclSum,
                                  state_->comm, stream));
  state_->watch(stream, "reduce_scatter_sum", in.nbytes());
}

void NcclCommunicator::do_barrier(bool bounded) {
  cuda::synchronize();  // this rank's collectives are done before it says it has arrived
  if (bounded) bootstrap_->set_timeout(timeout());
  bounded ? bootstrap_->barrier() : bootstrap_->barrier_unbounded();
}

}  // namespace pt::dist
