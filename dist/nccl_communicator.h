// The NCCL backend: collectives on CUDA tensors of this rank's GPU, one process per GPU. Built only with CUDA,
// NCCL and MPI (PT_NCCL); dist/world.h creates it for a multi-process run on CUDA. NCCL's unique id is made by
// rank 0 and broadcast over MPI (the bootstrap, as llm.c does); MPI also carries barriers and the final abort.
//
// Synchronous collectives run on pt::cuda::current_stream(), in stream order with the ops around them (the host
// does not wait). all_reduce_sum_async runs on a stream of its own after an event of the current stream, so a
// gradient bucket travels while the backward pass computes the next one; wait() orders the current stream after
// it. A watchdog thread follows every collective by an event: one that has not completed within timeout(), or
// an asynchronous NCCL error, makes this rank print what waited, abort its NCCL communicator and exit, and the
// launcher then ends every rank.
#pragma once
#include <memory>

#include "dist/communicator.h"
#include "dist/mpi_communicator.h"

namespace pt::dist {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over every rank of `bootstrap`; this process's GPU must be selected (cudaSetDevice) already.
  explicit NcclCommunicator(std::unique_ptr<MpiCommunicator> bootstrap);
  ~NcclCommunicator() override;
  const char* backend() const override { return "NCCL"; }
  Device device() const override { return Device::cuda; }
  [[noreturn]] void abort(int code) override;

 protected:
  void do_all_reduce_sum(const Tensor& t) override;
  std::unique_ptr<PendingCollective> do_all_reduce_sum_async(const Tensor& t) override;
  void do_broadcast(const Tensor& t, int root) override;
  void do_all_gather(const Tensor& in, const Tensor& out) override;
  void do_reduce_scatter_sum(const Tensor& in, const Tensor& out) override;
  void do_barrier(bool bounded) override;

 private:
  struct State;  // NCCL communicator, side stream, watchdog (nccl_communicator.cpp)
  std::unique_ptr<MpiCommunicator> bootstrap_;
  std::unique_ptr<State> state_;
};

}  // namespace pt::dist
