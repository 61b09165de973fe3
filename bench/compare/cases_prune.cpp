// Pruning cases of `make compare`, project side (bench/reference/prune_cases.py is the PyTorch side):
//   hessian           HessianAccumulator::add_batch of one [tokens, cols] batch
//   sparsegpt_matrix  sparsegpt_prune of one [rows, cols] weight (Hessian of 2·cols random tokens precomputed)
//   wanda_matrix      WandaStats of one calibration batch, wanda_mask, the mask applied
//   magnitude_matrix  magnitude_mask (one threshold per matrix), applied
//   prune_model       prune_model: every decoder layer in turn, calibration forwards included, from dense weights
// "kernel" selects fused | unfused (the CPU's fused path runs the reference loops, as train_prune does).
#include "bench/compare/compare_case.h"
#include "prune/hessian.h"
#include "prune/magnitude.h"
#include "prune/sequential.h"
#include "prune/sparsegpt.h"
#include "prune/wanda.h"
#include "tensor/ops.h"
#include "tensor/random.h"

namespace pt::comparison {
namespace {

using namespace pt::prune;

Tensor normal(const Shape& shape, uint64_t seed, Device dev) {
  Generator gen(seed);
  return Tensor::normal(shape, 0.0, 1.0, gen, DType::f32, dev);
}

PruneKernel kernel_of(const json& p) { return parse_prune_kernel(p.value("kernel", std::string("fused"))); }

SparsityPattern pattern_of(const json& p) {
  const int64_t n = p.value("prune_n", int64_t(0)), m = p.value("prune_m", int64_t(0));
  return n > 0 ? SparsityPattern::nm(n, m) : SparsityPattern::unstructured(p.value("sparsity", 0.5));
}

double pruned_fraction(const Tensor& keep) {
  int64_t kept = 0;
  for (uint8_t k : keep.to_vector<uint8_t>()) kept += k != 0;
  return 1.0 - double(kept) / double(keep.numel());
}

class HessianCase : public CompareCase {
 public:
  HessianCase(const json& p, Device dev)
      : x_(normal({param_int(p, "tokens"), param_int(p, "cols")}, 2, dev)), acc_(param_int(p, "cols"), dev),
        sequences_(p.value("sequences", int64_t(1))),
        kernel_(parse_hessian_kernel(p.value("kernel", std::string("fused")))) {}
  json run() override {
    acc_.add_batch(x_, sequences_, kernel_);
    return json::object();
  }

 private:
  Tensor x_;
  HessianAccumulator acc_;
  int64_t sequences_;
  HessianKernel kernel_;
};

// One matrix pruned from the same dense weight every iteration.
class MatrixCase : public CompareCase {
 public:
  MatrixCase(const json& p, Device dev, uint64_t seed)
      : w0_(normal({param_int(p, "rows"), param_int(p, "cols")}, seed, dev)), w_(w0_.clone()), pattern_(pattern_of(p)),
        kernel_(kernel_of(p)) {}
  json check(const json&) override { return {{"sparsity", pruned_fraction(keep_)}}; }

 protected:
  Tensor w0_, w_, keep_;
  SparsityPattern pattern_;
  PruneKernel kernel_;
};

class SparseGptMatrixCase : public MatrixCase {
 public:
  SparseGptMatrixCase(const json& p, Device dev) : MatrixCase(p, dev, 5) {
    const int64_t cols = param_int(p, "cols");
    HessianAccumulator acc(cols, dev);
    acc.add_batch(normal({p.value("calib_tokens", 2 * cols), cols}, 1, dev), 1);
    H_ = acc.H();
    options_.blocksize = p.value("blocksize", int64_t(128));
    options_.kernel = kernel_;
  }
  json run() override {
    w_.copy_(w0_);
    keep_ = sparsegpt_prune(w_, H_, pattern_, {}, options_).keep;
    return json::object();
  }

 private:
  Tensor H_;
  SparseGptOptions options_;
};

class WandaMatrixCase : public MatrixCase {
 public:
  WandaMatrixCase(const json& p, Device dev)
      : MatrixCase(p, dev, 6), x_(normal({param_int(p, "tokens"), param_int(p, "cols")}, 7, dev)) {}
  json run() override {
    w_.copy_(w0_);
    WandaStats stats(w_.size(1), w_.device());
    stats.add_batch(x_, 1);
    keep_ = wanda_mask(w_, stats, pattern_, {}, kernel_);
    w_.copy_(apply_mask(w_, keep_));
    return json::object();
  }

 private:
  Tensor x_;
};

class MagnitudeMatrixCase : public MatrixCase {
 public:
  MagnitudeMatrixCase(const json& p, Device dev) : MatrixCase(p, dev, 8) {}
  json run() override {
    w_.copy_(w0_);
    keep_ = magnitude_mask(w_, pattern_, MaskGroup::matrix, {}, kernel_);
    w_.copy_(apply_mask(w_, keep_));
    return json::object();
  }
};

class PruneModelCase : public CompareCase {
 public:
  PruneModelCase(const json& p, Device dev) : model_(opt_config_from(p), dev, 0) {
    for (auto& [name, lin] : model_.linear_layers()) dense_.push_back(lin->weight.data().clone());
    options_.method = parse_prune_method(p.at("method").get<std::string>());
    options_.pattern = pattern_of(p);
    options_.kernel = kernel_of(p);
    options_.hessian_kernel = parse_hessian_kernel(p.value("kernel", std::string("fused")) == "unfused" ? "unfused"
                                                                                                         : "fused");
    options_.forward_batch = p.value("forward_batch", int64_t(4));
    options_.measure_reconstruction = false;  // the reference drivers do not measure it either
    options_.show_progress = false;
    if (options_.method != PruneMethod::magnitude) {
      const int64_t n = param_int(p, "nsamples"), t = param_int(p, "seqlen");
      ids_ = Tensor::from_vector(random_tokens(n * t, model_.config().vocab_size, 11), {n, t});
    }
  }
  json run() override {
    size_t k = 0;
    for (auto& [name, lin] : model_.linear_layers()) {
      lin->clear_mask();
      lin->weight.data().copy_(dense_[k++]);
    }
    sparsity_ = prune_model(model_, ids_, options_).sparsity;
    return json::object();
  }
  json check(const json&) override { return {{"sparsity", sparsity_}}; }

 private:
  opt::OptForCausalLM model_;
  std::vector<Tensor> dense_;
  Tensor ids_;
  SequentialPruneOptions options_;
  double sparsity_ = 0;
};

}  // namespace

void add_prune_cases(CaseRegistry& r) {
  r["hessian"] = [](const json& p, Device d) { return std::make_unique<HessianCase>(p, d); };
  r["sparsegpt_matrix"] = [](const json& p, Device d) { return std::make_unique<SparseGptMatrixCase>(p, d); };
  r["wanda_matrix"] = [](const json& p, Device d) { return std::make_unique<WandaMatrixCase>(p, d); };
  r["magnitude_matrix"] = [](const json& p, Device d) { return std::make_unique<MagnitudeMatrixCase>(p, d); };
  r["prune_model"] = [](const json& p, Device d) { return std::make_unique<PruneModelCase>(p, d); };
}

}  // namespace pt::comparison
