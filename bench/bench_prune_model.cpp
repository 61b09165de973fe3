// Whole-model and one-layer pruning time of the sequential driver (prune/sequential.h): SparseGPT and Wanda with
// calibration (embedding, calibration forward with Hessian / feature-norm accumulation, pruning, pruned forward),
// magnitude without calibration (mask selection only), at 50% unstructured sparsity, kernels fused vs unfused
// (mask selection, OBS sweep and Hessian accumulation switch together).
//
// Models have random weights (timing does not depend on the values): on the CPU a tiny OPT (2 layers, hidden 64)
// and one OPT-125M-shaped layer with a small calibration set, so the program finishes in seconds; on CUDA one
// OPT-125M layer and the whole 12-layer OPT-125M with SparseGPT's calibration set (128 windows of 2048 tokens).
// Time is the driver's own wall clock (it synchronises the device), set as manual time. Counters: prune_s =
// time spent selecting masks and updating weights (the rest is forwards and statistics), s_per_layer, and
// calib_tok/s = calibration tokens through every layer per second.
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "opt/model.h"
#include "prune/sequential.h"

namespace pt {
namespace {

using prune::PruneMethod;

struct ModelCase {
  const char* name;
  opt::OptConfig config;
  int64_t nsamples, seqlen;
};

opt::OptConfig with_layers(const std::string& preset, int64_t layers) {
  opt::OptConfig c = opt::opt_preset(preset);
  c.num_hidden_layers = layers;
  c.dropout = 0.0;
  return c;
}

const std::vector<ModelCase>& model_cases() {
  static const std::vector<ModelCase> cases = {
      {"tiny", with_layers("tiny", 2), 32, 64},                    // 0: CPU
      {"opt-125m-1layer", with_layers("125m", 1), 8, 128},         // 1: CPU, one real-sized layer
      {"opt-125m-1layer", with_layers("125m", 1), 128, 2048},      // 2: CUDA, SparseGPT's calibration set
      {"opt-125m", with_layers("125m", 12), 128, 2048},            // 3: CUDA, whole model
  };
  return cases;
}

Tensor random_ids(int64_t n, int64_t t, int64_t vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(n * t));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(random_bits(1, i) % uint64_t(vocab));
  return Tensor::from_vector(ids, {n, t});
}

// range(0): method; range(1): 0 unfused, 1 fused; range(2): 0 cpu, 1 cuda; range(3): model case.
void BM_prune_model(benchmark::State& state) {
  const auto method = PruneMethod(state.range(0));
  const bool fused = state.range(1) != 0;
  const Device dev = state.range(2) ? Device::cuda : Device::cpu;
  if (dev == Device::cuda && !bench::require_cuda(state)) return;
  const ModelCase& mc = model_cases()[size_t(state.range(3))];

  opt::OptForCausalLM model(mc.config, dev, 0);
  std::vector<Tensor> dense;  // restored before every iteration, so each one prunes the dense model
  for (auto& [name, lin] : model.linear_layers()) dense.push_back(lin->weight.data().clone());
  const Tensor ids = method == PruneMethod::magnitude ? Tensor() : random_ids(mc.nsamples, mc.seqlen, mc.config.vocab_size);

  prune::SequentialPruneOptions o;
  o.method = method;
  o.pattern = prune::SparsityPattern::unstructured(0.5);
  kernels::ScopedSelection shorthand;  // every pruning kernel family's fused (or unfused) variant on the device
  shorthand.shorthand(fused ? "fused" : "unfused");
  o.forward_batch = dev == Device::cuda ? 8 : 4;
  o.measure_reconstruction = false;  // time the method itself, not the measurement
  o.show_progress = false;

  double prune_seconds = 0, total_seconds = 0;
  for (auto _ : state) {
    size_t k = 0;
    for (auto& [name, lin] : model.linear_layers()) {
      lin->clear_mask();
      lin->weight.data().copy_(dense[k++]);
    }
    const prune::PruneReport r = prune::prune_model(model, ids, o);
    state.SetIterationTime(r.seconds);
    total_seconds += r.seconds;
    for (const auto& m : r.matrices) prune_seconds += m.seconds;
  }
  const double iters = double(state.iterations());
  const double layers = double(mc.config.num_hidden_layers);
  state.counters["prune_s"] = prune_seconds / iters;
  state.counters["s_per_layer"] = total_seconds / iters / layers;
  if (ids.defined()) state.counters["calib_tok/s"] = double(mc.nsamples * mc.seqlen) * layers / (total_seconds / iters);
}

int register_benchmarks() {
  const char* methods[] = {"magnitude", "wanda", "sparsegpt"};
  auto add = [&](int method, int fused, int cuda, int model, int iterations) {
    const ModelCase& mc = model_cases()[size_t(model)];
    const std::string name = std::string("prune_model/") + methods[method] + "/" + (fused ? "fused" : "unfused") +
                             "/" + (cuda ? "cuda" : "cpu") + "/" + mc.name;
    benchmark::RegisterBenchmark(name.c_str(), BM_prune_model)
        ->ArgNames({"method", "fused", "cuda", "model"})
        ->Args({method, fused, cuda, model})
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(iterations);
  };
  for (int model : {0, 1})
    for (int method : {0, 1, 2})
      for (int fused : {0, 1}) add(method, fused, 0, model, model == 0 ? 3 : 1);
  for (int model : {2, 3})
    for (int method : {0, 1, 2})
      for (int fused : {0, 1}) add(method, fused, 1, model, model == 2 ? 3 : 1);
  return 0;
}
const int registered = register_benchmarks();

}  // namespace
}  // namespace pt
