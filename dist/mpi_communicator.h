// The MPI backend: collectives on CPU tensors over MPI_COMM_WORLD (OpenMPI from Debian's packages; any MPI-3
// library works). Built only when CMake finds MPI (PT_MPI); dist/world.h creates it for a run launched by
// mpirun with more than one process. A single process never initialises MPI.
//
// Every collective is started non-blocking (MPI_Iallreduce, ...) and completed by polling MPI_Testall against
// the deadline timeout() sets: a rank whose peers died or hung prints which operation waited and calls
// MPI_Abort, which ends every rank (mpirun also ends the others when one is killed). The poll spins briefly and
// then sleeps between tests, so a rank waiting while another works (e.g. pruning a matrix the others receive)
// leaves its core to it. MPI errors come back as codes (MPI_ERRORS_RETURN) and are thrown as pt::Error.
#pragma once
#include "dist/communicator.h"

namespace pt::dist {

class MpiCommunicator final : public Communicator {
 public:
  // Initialises MPI (MPI_THREAD_FUNNELED: collectives from the main thread only) unless it already is.
  MpiCommunicator();
  ~MpiCommunicator() override;  // MPI_Finalize when this object initialised MPI
  const char* backend() const override { return "MPI"; }
  Device device() const override { return Device::cpu; }
  [[noreturn]] void abort(int code) override;

  // The NCCL backend's bootstrap: root's bytes to every rank (host memory).
  void broadcast_bytes(void* data, int64_t bytes, int root);
  // MPI counts are ints: a larger tensor moves in pieces of at most this many elements (INT_MAX / 2). Tests
  // lower it to run the piecewise paths on small tensors.
  void set_max_count(int64_t elements);

 protected:
  void do_all_reduce_sum(const Tensor& t) override;
  std::unique_ptr<PendingCollective> do_all_reduce_sum_async(const Tensor& t) override;
  void do_broadcast(const Tensor& t, int root) override;
  void do_all_gather(const Tensor& in, const Tensor& out) override;
  void do_reduce_scatter_sum(const Tensor& in, const Tensor& out) override;
  void do_barrier(bool bounded) override;

 private:
  struct Place {
    int rank = 0, size = 1;
    bool initialised = false;  // MPI_Init ran here (and MPI_Finalize will)
  };
  static Place join_world();
  explicit MpiCommunicator(const Place& p);
  template <class F> void for_each_piece(int64_t n, F&& f) const;

  bool initialised_here_ = false;
  int64_t max_count_;
};

}  // namespace pt::dist
