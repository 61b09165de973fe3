// Masked AdamW step over the parameter tensors of OPT models, every variant of the adamw kernel family
// (nn/adamw.h) on each device it runs on: the reference loop (CPU), the unfused composition of tensor ops, the
// fused step (CUDA multi-tensor kernel; threaded AVX2 loop on the CPU), and any variant registered later.
//
// Parameters are the real per-tensor shapes (embeddings, 4 attention projections, fc1/fc2 with biases, two
// layer norms per layer, the final layer norm): OPT-125M has 125,239,296 parameters in 196 tensors, OPT-1.3B
// 1,315,758,080 in 388. The Linear weights inside the layers carry a 50% keep-mask (what pruning leaves);
// embeddings, biases and norms are dense. bytes_per_second counts the bytes a step must move: read p, g, m, v
// and write p, m, v (28 bytes per element) plus one mask byte per masked element (29 for pruned weights).
// CPU cases run 2 iterations of the full 125M model (the reference takes about a second per step) plus a
// one-layer case; OPT-1.3B runs on CUDA only. CUDA cases use CUDA-event manual time; every CUDA case also
// times the unfused step on the same tensors and reports its speed-up over it.
#include <memory>

#include "bench/bench_util.h"
#include "nn/adamw.h"

namespace pt {
namespace {

using autograd::Variable;
using nn::AdamW;

struct ModelShape {
  int64_t layers, hidden, ffn;
  bool embeddings;  // false: one decoder layer only (the small CPU case)
};
const ModelShape kModels[] = {{12, 768, 3072, true}, {24, 2048, 8192, true}, {1, 768, 3072, false}};
const char* kModelNames[] = {"opt-125m", "opt-1.3b", "opt-125m-1layer"};

struct ParamSpec {
  Shape shape;
  bool masked;  // a pruned Linear weight
};

std::vector<ParamSpec> param_specs(const ModelShape& m) {
  const int64_t h = m.hidden, f = m.ffn;
  std::vector<ParamSpec> specs;
  if (m.embeddings) specs = {{{50272, h}, false}, {{2050, h}, false}};
  for (int64_t l = 0; l < m.layers; ++l) {
    for (int k = 0; k < 4; ++k) specs.insert(specs.end(), {{{h, h}, true}, {{h}, false}});  // q, k, v, out
    specs.insert(specs.end(), {{{h}, false}, {{h}, false}});                                 // attention norm
    specs.insert(specs.end(), {{{f, h}, true}, {{f}, false}, {{h, f}, true}, {{h}, false}});  // fc1, fc2
    specs.insert(specs.end(), {{{h}, false}, {{h}, false}});                                 // final norm
  }
  if (m.embeddings) specs.insert(specs.end(), {{{h}, false}, {{h}, false}});  // decoder final norm
  return specs;
}

struct Setup {
  std::vector<Variable> vars;
  std::unique_ptr<AdamW> opt;
  double bytes = 0, params = 0;
};

// Random weights and gradients on `dev`; weight decay 0.01 on matrices, none on biases and norms.
Setup make_setup(const ModelShape& m, Device dev) {
  Setup s;
  Generator gen(0);
  nn::AdamWParamGroup decay{{}, 0.01, {}}, no_decay{{}, 0.0, {}};
  std::vector<Tensor> masks;
  for (const ParamSpec& spec : param_specs(m)) {
    Variable v(Tensor::uniform(spec.shape, -0.05, 0.05, gen, DType::f32, dev), true);
    v.set_grad(Tensor::uniform(spec.shape, -1e-3, 1e-3, gen, DType::f32, dev));
    s.vars.push_back(v);
    (spec.shape.size() == 2 ? decay : no_decay).params.push_back(v);
    const double n = double(v.data().numel());
    s.params += n;
    s.bytes += 28.0 * n + (spec.masked ? n : 0.0);
  }
  s.opt = std::make_unique<AdamW>(std::vector<nn::AdamWParamGroup>{decay, no_decay});
  for (size_t i = 0; i < s.opt->num_params(); ++i)
    if (s.opt->param(i).dim() == 2 && s.opt->param(i).size(0) != 50272 && s.opt->param(i).size(0) != 2050)
      s.opt->set_mask(i, compare_scalar(Tensor::uniform(s.opt->param(i).shape(), 0, 1, gen, DType::f32, dev), 0.5,
                                        CompareOp::lt));
  return s;
}

// Mean seconds of a few steps with CUDA events (after one warm-up step).
double cuda_seconds_per_step(AdamW& opt, const std::string& kernel, int steps) {
  opt.step(1e-4, kernel);
  return lab::time_once(Device::cuda, [&] {
           for (int i = 0; i < steps; ++i) opt.step(1e-4, kernel);
         }) / steps;
}

void BM_adamw_step(benchmark::State& state, const std::string& kernel, Device dev, int model) {
  if (dev == Device::cuda && !bench::require_cuda(state)) return;
  Setup s = make_setup(kModels[model], dev);
  if (dev == Device::cuda) {
    bench::time_cuda(state, [&] { s.opt->step(1e-4, kernel); });
    const double mine = cuda_seconds_per_step(*s.opt, kernel, 10);
    const double unfused = cuda_seconds_per_step(*s.opt, "unfused", 3);
    state.counters["unfused_ms"] = unfused * 1e3;
    state.counters["speedup"] = unfused / mine;
  } else {
    for (auto _ : state) s.opt->step(1e-4, kernel);
  }
  bench::set_bytes(state, s.bytes);
  state.counters["params"] = s.params;
  state.counters["tensors"] = double(s.vars.size());
}

int register_benchmarks() {
  for (Device dev : {Device::cpu, Device::cuda})
    for (const std::string& kernel : nn::adamw_family().names_on(dev))
      for (int model : dev == Device::cpu ? std::vector<int>{2, 0} : std::vector<int>{0, 1}) {
        const std::string name = "adamw_masked/" + kernel + "/" + device_name(dev) + "/" + kModelNames[model];
        auto* b = benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) {
          BM_adamw_step(st, kernel, dev, model);
        })->Unit(benchmark::kMillisecond);
        if (dev == Device::cuda) b->UseManualTime();
        else b->UseRealTime()->Iterations(model == 2 ? 10 : 2);
      }
  return 0;
}
const int registered = register_benchmarks();

}  // namespace
}  // namespace pt
