// Summing calibration statistics over ranks, and handing a pruned matrix from its rank to the others.
#include "prune/calibration_across_ranks.h"

#include <vector>

#include "tensor/ops.h"

namespace pt::prune {
namespace {

// Scales a rank's running average `s` over `local` sequences to its part of the average over all ranks'
// sequences, sums the parts on every rank and returns the total number of sequences.
int64_t all_reduce_running_average(dist::Communicator& comm, const Tensor& s, int64_t local) {
  const auto total = int64_t(comm.all_reduce_sum(double(local)));
  PT_CHECK(total >= 1, "calibration across ranks: no rank saw a calibration sequence");
  Tensor part = s;
  unary_(part, part, UnaryOp::mul_scalar, double(local) / double(total));
  comm.all_reduce_sum(part);
  return total;
}

}  // namespace

void all_reduce_hessian(dist::Communicator& comm, HessianAccumulator& acc) {
  PT_CHECK(acc.H().defined(), "all_reduce_hessian: the accumulator has no Hessian");
  acc.nsamples = all_reduce_running_average(comm, acc.H(), acc.nsamples);  // H() is mirrored: both triangles
}

void all_reduce_wanda(dist::Communicator& comm, WandaStats& stats) {
  PT_CHECK(stats.scaler_row.defined(), "all_reduce_wanda: the statistics have no scaler_row");
  stats.nsamples = all_reduce_running_average(comm, stats.scaler_row, stats.nsamples);
}

void share_pruned_matrix(dist::Communicator& comm, int owner, nn::Linear& linear, MatrixPruneReport& report) {
  Tensor& weight = linear.weight.data();
  comm.broadcast(weight, owner);
  Tensor keep = comm.rank() == owner ? linear.weight_mask : Tensor::empty(weight.shape(), DType::u8, weight.device());
  PT_CHECK(keep.defined(), "share_pruned_matrix: rank ", owner, " has not stored a mask for the matrix it pruned");
  comm.broadcast(keep, owner);
  if (comm.rank() != owner) linear.set_mask(keep);
  std::vector<double> numbers = {double(report.rows),         double(report.cols),
                                 report.sparsity,             report.reconstruction_error,
                                 report.seconds,              double(report.sparsegpt_retries),
                                 report.percdamp_used,        double(report.dead_columns)};
  numbers = comm.broadcast(numbers, owner);
  report.rows = int64_t(numbers[0]);
  report.cols = int64_t(numbers[1]);
  report.sparsity = numbers[2];
  report.reconstruction_error = numbers[3];
  report.seconds = numbers[4];
  report.sparsegpt_retries = int(numbers[5]);
  report.percdamp_used = numbers[6];
  report.dead_columns = int64_t(numbers[7]);
}

}  // namespace pt::prune
