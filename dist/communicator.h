// Where ranks meet: the collectives a data-parallel run needs, on tensors of one device, behind one interface.
//
//   all_reduce_sum      every rank's tensor becomes the element-wise sum over the ranks (in place)
//   broadcast           every rank's tensor becomes root's (in place)
//   all_gather          out = [rank 0's in, rank 1's in, ...] on every rank
//   reduce_scatter_sum  out = rank r's block of the element-wise sum of every rank's in ([size, n] -> [n])
//   barrier             returns when every rank has reached it
//
// Backends (dist/world.h picks one from how the program was launched): one process (every collective is the
// identity or a copy, so code that calls them needs no `if (distributed)`), MPI on CPU tensors, NCCL on CUDA
// tensors. Every rank must call the same collectives in the same order with the same shapes.
//
// The public methods check their arguments (defined, contiguous, on the communicator's device, a dtype the
// operation takes, matching sizes) and then call the backend (tiny-cuda-nn's checked-public-over-virtual
// pattern). A collective that waits longer than timeout() for the other ranks ends every rank with a message
// saying which operation waited (a rank died or hung): no run hangs forever.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace pt::dist {

// A collective started by an *_async call. wait() returns when this rank's part of it is complete (on CUDA:
// when the current stream is ordered after it); the tensor must stay untouched until then.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  virtual void wait() = 0;
};

// [begin, end): a rank's contiguous share of n items.
struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  virtual const char* backend() const = 0;  // "one process", "MPI", "NCCL"
  virtual Device device() const = 0;        // where the tensors of its collectives live
  virtual bool takes(Device d) const { return d == device(); }  // one process takes tensors of any device
  // "rank 1 of 4 (MPI)": how messages of this rank start.
  std::string describe() const;

  void all_reduce_sum(const Tensor& t);
  std::unique_ptr<PendingCollective> all_reduce_sum_async(const Tensor& t);
  void broadcast(const Tensor& t, int root);
  void all_gather(const Tensor& in, const Tensor& out);
  void reduce_scatter_sum(const Tensor& in, const Tensor& out);
  void barrier();
  // A barrier that waits as long as it takes (a rank doing long work alone, e.g. rank 0 pretraining the model
  // the others need): only a rank that dies ends it, through the launcher.
  void barrier_unbounded();

  // Host values, through a small tensor on device().
  std::vector<double> all_reduce_sum(const std::vector<double>& values);
  double all_reduce_sum(double value) { return all_reduce_sum(std::vector<double>{value})[0]; }
  std::vector<double> broadcast(const std::vector<double>& values, int root);
  std::vector<double> all_gather(double value);  // one value per rank

  // This rank's contiguous share of n items: ranks before r get floor/ceil(n / size) items each.
  Range share(int64_t n) const;

  // Ends every rank of the run with exit code `code` (after this rank printed why). Never returns.
  [[noreturn]] virtual void abort(int code) = 0;

  std::chrono::milliseconds timeout() const { return timeout_; }
  void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }

 protected:
  Communicator(int rank, int size);
  virtual void do_all_reduce_sum(const Tensor& t) = 0;
  virtual std::unique_ptr<PendingCollective> do_all_reduce_sum_async(const Tensor& t) = 0;
  virtual void do_broadcast(const Tensor& t, int root) = 0;
  virtual void do_all_gather(const Tensor& in, const Tensor& out) = 0;
  virtual void do_reduce_scatter_sum(const Tensor& in, const Tensor& out) = 0;
  virtual void do_barrier(bool bounded) = 0;

 private:
  void check_tensor(const char* op, const Tensor& t, const char* what) const;
  void check_sum_dtype(const char* op, const Tensor& t) const;
  int rank_, size_;
  std::chrono::milliseconds timeout_;
};

// PT_DIST_TIMEOUT (seconds) when set, else 30 minutes: long enough for one rank to prune an OPT-66B matrix or
// write a checkpoint while the others wait, short enough that a hung rank does not hold a machine for a day.
std::chrono::milliseconds default_timeout();

// The one-rank communicator every single-process run uses (a process-wide instance), and a new one.
Communicator& one_process();
std::unique_ptr<Communicator> new_one_process();

}  // namespace pt::dist
