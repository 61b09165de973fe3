// Gradient buckets: the data-parallel gradient sum, overlapped with the backward pass (as torch's DDP does).
//
// The trained parameters are grouped into buckets of at most cap_bytes of gradient (one parameter larger than
// the cap gets a bucket of its own), in reverse order of registration: the backward finishes the last layers
// first, so the first bucket fills first. During an armed backward each parameter's autograd hook
// (Variable::set_grad_ready_hook) counts it done; when every parameter of a bucket is done, the bucket's
// gradients are copied into its one flat buffer and a single all_reduce_sum_async of that buffer starts while
// the backward goes on (MPI: MPI_Iallreduce; NCCL: on the communicator's own stream, ordered after the compute
// stream by events). finish() starts the buckets whose parameters got no gradient in this backward, waits for
// every bucket and copies the sums back into the gradients. Buckets start in bucket order on every rank, so
// the ranks' collectives always match.
//
// Every rank must have the same parameters with a gradient (the same model and trained set): a parameter
// without one is sent as zeros and keeps no gradient. The sums are those of the per-parameter all-reduce,
// element by element, so the result does not depend on the cap.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "autograd/variable.h"
#include "dist/communicator.h"

namespace pt::train {

// DDP's default cap: 25 MiB of gradient per bucket.
inline constexpr int64_t kDefaultBucketBytes = int64_t(25) << 20;

// Buckets of parameter indices for parameters of `bytes` each (in order of registration) and `kinds` (a
// bucket holds one kind: one dtype on one device): walked from the last parameter to the first, a new
// bucket starts when the next parameter is of another kind or would take the bucket past cap_bytes.
std::vector<std::vector<size_t>> assign_buckets(const std::vector<int64_t>& bytes, const std::vector<int>& kinds,
                                                int64_t cap_bytes);

class GradientBuckets {
 public:
  // `params` in order of registration; installs their hooks (removed by the destructor).
  GradientBuckets(dist::Communicator& comm, std::vector<autograd::Variable*> params, int64_t cap_bytes);
  ~GradientBuckets();
  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;

  // The next backward's finished gradients start their buckets' sums (arm only the last backward of a step
  // when gradients accumulate over several).
  void arm();
  // Starts the buckets not started yet, waits for every one, and leaves every gradient summed over the ranks.
  void finish();

  const std::vector<std::vector<size_t>>& buckets() const { return members_; }
  // Buckets started by hooks during the last armed backward (the rest started in finish()).
  int64_t started_during_backward() const { return started_by_hooks_; }

 private:
  struct Bucket;
  void on_ready(size_t param);
  void start(size_t bucket);

  dist::Communicator& comm_;
  std::vector<autograd::Variable*> params_;
  std::vector<std::vector<size_t>> members_;
  std::vector<size_t> bucket_of_;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  size_t next_ = 0;  // the first bucket not started yet (buckets start in order)
  bool armed_ = false;
  int64_t started_by_hooks_ = 0;
};

}  // namespace pt::train
