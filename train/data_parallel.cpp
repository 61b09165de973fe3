// Gradient sums, parameter broadcasts and the optimizer-state gather of data-parallel retraining.
#include "train/data_parallel.h"

#include <algorithm>
#include <numeric>

namespace pt::train {

std::vector<int> shard_owners(const std::vector<int64_t>& numels, int ranks) {
  std::vector<size_t> by_size(numels.size());
  std::iota(by_size.begin(), by_size.end(), size_t(0));
  std::stable_sort(by_size.begin(), by_size.end(), [&](size_t a, size_t b) { return numels[a] > numels[b]; });
  std::vector<int64_t> load(size_t(ranks), 0);
  std::vector<int> owners(numels.size(), 0);
  for (size_t k : by_size) {
    const auto r = size_t(std::min_element(load.begin(), load.end()) - load.begin());
    owners[k] = int(r);
    load[r] += numels[k];
  }
  return owners;
}

void all_reduce_gradients(dist::Communicator& comm, const std::vector<autograd::Variable*>& params) {
  for (autograd::Variable* p : params)
    if (p->grad().defined()) comm.all_reduce_sum(p->grad());
}

void broadcast_parameters(dist::Communicator& comm, const std::vector<autograd::Variable*>& params,
                          const std::vector<int>& owners) {
  for (size_t k = 0; k < params.size(); ++k) comm.broadcast(params[k]->data(), owners[k]);
}

nn::OptimizerState gather_optimizer_state(dist::Communicator& comm, const nn::AdamW& adamw,
                                          const std::vector<autograd::Variable*>& params,
                                          const std::vector<std::string>& names, const std::vector<int>& owners,
                                          const std::vector<int>& local) {
  nn::OptimizerState os;
  double step = 0;
  for (size_t k = 0; k < params.size(); ++k) {
    const Tensor& p = params[k]->data();
    const bool mine = local[k] >= 0;
    Tensor m = mine ? adamw.exp_avg(size_t(local[k])).clone() : Tensor::zeros(p.shape(), p.dtype(), p.device());
    Tensor v = mine ? adamw.exp_avg_sq(size_t(local[k])).clone() : Tensor::zeros(p.shape(), p.dtype(), p.device());
    comm.broadcast(m, owners[k]);
    comm.broadcast(v, owners[k]);
    if (mine) step = std::max(step, double(adamw.step_count(size_t(local[k]))));
    os.m[names[k]] = m;
    os.v[names[k]] = v;
  }
  const std::vector<double> steps = comm.all_gather(step);  // the owners' counts (a rank may own none)
  os.step = int64_t(*std::max_element(steps.begin(), steps.end()));
  return os;
}

}  // namespace pt::train
