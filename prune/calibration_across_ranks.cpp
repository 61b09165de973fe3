// Summing calibration statistics over ranks, and handing a pruned matrix from its rank to the others.
#include "prune/calibration_across_ranks.h"

#include <algorithm>
#include <vector>

#include "tensor/ops.h"

namespace pt::prune {
namespace {

// The number of calibration sequences over all ranks (at least one).
int64_t all_reduce_count(dist::Communicator& comm, int64_t local) {
  const auto total = int64_t(comm.all_reduce_sum(double(local)));
  PT_CHECK(total >= 1, "calibration across ranks: no rank saw a calibration sequence");
  return total;
}

// Scales a rank's running average `s` over `local` sequences to its part of the average over all ranks'
// sequences, sums the parts on every rank and returns the total number of sequences.
int64_t all_reduce_running_average(dist::Communicator& comm, const Tensor& s, int64_t local) {
  const int64_t total = all_reduce_count(comm, local);
  Tensor part = s;
  unary_(part, part, UnaryOp::mul_scalar, double(local) / double(total));
  comm.all_reduce_sum(part);
  return total;
}

}  // namespace

void all_reduce_exact_sum(dist::Communicator& comm, ExactSum& sum) {
  PT_CHECK(sum.defined(), "all_reduce_exact_sum: the sum has no shape");
  // The finest grid, the coarsest and the term count over the ranks (exact: small integers in doubles), then every
  // rank's integers on the finest grid, summed as int64 (exact, in any order).
  const std::vector<double> grids = comm.all_gather(double(sum.grid())), tops = comm.all_gather(double(sum.top()));
  const auto terms = int64_t(comm.all_reduce_sum(double(sum.terms())));
  const int grid = int(*std::min_element(grids.begin(), grids.end()));
  const int top = int(*std::max_element(tops.begin(), tops.end()));
  sum.shift_to(grid);
  Tensor units = sum.units().to(comm.device());
  comm.all_reduce_sum(units);
  sum.units() = units.to(Device::cpu);
  sum.set_scale(grid, top, terms);
}

void all_reduce_hessian(dist::Communicator& comm, HessianAccumulator& acc) {
  PT_CHECK(acc.cols() > 0, "all_reduce_hessian: the accumulator has no Hessian");
  if (acc.exact()) {
    all_reduce_exact_sum(comm, acc.exact_sum());  // before H is read: it is made once, from the whole sum
    acc.nsamples = all_reduce_count(comm, acc.nsamples);
    return;
  }
  acc.nsamples = all_reduce_running_average(comm, acc.H(), acc.nsamples);  // H() is mirrored: both triangles
}

void all_reduce_wanda(dist::Communicator& comm, WandaStats& stats) {
  PT_CHECK(stats.scaler_row.defined(), "all_reduce_wanda: the statistics have no scaler_row");
  if (stats.exact.defined()) {
    all_reduce_exact_sum(comm, stats.exact);
    stats.nsamples = all_reduce_count(comm, stats.nsamples);
    return stats.refresh_from_exact_sum();
  }
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
