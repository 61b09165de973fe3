// Sequential calibration over several ranks (prune_model with SequentialPruneOptions::comm): each rank forwards
// its share of the calibration windows through the layer, the statistics are summed into what one process would
// have accumulated over all of them, and each of a layer's matrices is pruned by one rank (round-robin) and
// broadcast, so every rank ends with the same weights and masks bit for bit and the pruning work is split.
//
// Both statistics are running averages over sequences (prune/hessian.h, prune/wanda.h): a rank that saw n_r of
// the N sequences holds S_r = (1/n_r) sum of its terms, so the average over all of them is sum_r (n_r / N) S_r.
#pragma once
#include <cstddef>

#include "dist/communicator.h"
#include "nn/linear.h"
#include "prune/hessian.h"
#include "prune/sequential.h"
#include "prune/wanda.h"

namespace pt::prune {

// Every rank's exact sum becomes the sum over the ranks (the same bits on every rank, for any split of the terms).
void all_reduce_exact_sum(dist::Communicator& comm, ExactSum& sum);
// H on every rank becomes the average over every rank's sequences; nsamples becomes their total.
void all_reduce_hessian(dist::Communicator& comm, HessianAccumulator& acc);
// The same for Wanda's per-feature running mean of squared norms.
void all_reduce_wanda(dist::Communicator& comm, WandaStats& stats);

// The rank that prunes matrix j of a layer.
inline int matrix_owner(const dist::Communicator& comm, size_t j) { return int(j % size_t(comm.size())); }

// After rank `owner` pruned `linear` (its weight zeroed where pruned, its mask stored) and filled `report`:
// every rank gets that weight, that mask and the report's numbers (name and layer are left as they are).
void share_pruned_matrix(dist::Communicator& comm, int owner, nn::Linear& linear, MatrixPruneReport& report);

}  // namespace pt::prune
