// Data-parallel retraining (TrainOptions::comm): each rank runs its share of every micro-batch's windows, the
// gradients are summed over the ranks (each rank's mean loss weighted by its share of the windows, so the sum
// is the gradient of the whole batch's mean loss), and the optimizer state is sharded ZeRO-1 style: each
// parameter is updated by one rank only (AdamW's moments live there), which then broadcasts the new values, so
// every rank holds the same parameters after each step and a pruned weight stays exactly 0.0 everywhere.
// A checkpoint gathers the whole state (one file, any number of ranks can resume from it).
#pragma once
#include <cstdint>
#include <vector>

#include "dist/communicator.h"
#include "nn/checkpoint.h"
#include "nn/adamw.h"

namespace pt::train {

// The rank that owns each parameter's optimizer state: greedy by element count (the largest unassigned
// parameter goes to the rank with the fewest elements so far), the same on every rank.
std::vector<int> shard_owners(const std::vector<int64_t>& numels, int ranks);

// grad += the other ranks' grads, for every defined gradient (every rank has the same ones defined), one blocking
// all-reduce per parameter: the reference of train/gradient_buckets.h (TrainOptions::bucket_bytes = 0).
void all_reduce_gradients(dist::Communicator& comm, const std::vector<autograd::Variable*>& params);

// Every parameter's values from its owner.
void broadcast_parameters(dist::Communicator& comm, const std::vector<autograd::Variable*>& params,
                          const std::vector<int>& owners);

// The whole optimizer state on every rank: for parameter k, the owner's moments (local[k] is its index in the
// owner's AdamW, -1 on the other ranks). names[k] keys the result.
nn::OptimizerState gather_optimizer_state(dist::Communicator& comm, const nn::AdamW& adamw,
                                          const std::vector<autograd::Variable*>& params,
                                          const std::vector<std::string>& names, const std::vector<int>& owners,
                                          const std::vector<int>& local);

}  // namespace pt::train
