// End to end: a pruned OPT model's prefill and decode throughput with its decoder Linears on each kernel.
//   prefill  one forward of a 2048-token window (128 on the CPU): tokens/s
//   decode   batch 1, a 128-token prompt (32 on the CPU) in the KV cache, then 64 (8) single-token steps timed:
//            tokens/s of the steps alone
// The model is OPT-1.3B-shaped on the GPU (24 layers, hidden 2048, ffn 8192; random weights in bf16: throughput
// does not depend on the values) and OPT-125M-shaped in f32 on the CPU. Its six Linears per layer are pruned by
// magnitude, 50 % unstructured (for dense/masked/csr/bitmap/auto) or 2:4 (for 2of4 and auto); embeddings, the
// LM head, attention and layer norms run the same code in every case, which is what an end-to-end number means.
// Counters: tokens/s and the packed weight bytes of the pruned layers (MB).
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "bench/bench_util.h"
#include "autograd/variable.h"
#include "nn/linear_kernel.h"
#include "opt/model.h"
#include "prune/sequential.h"
#if PT_CUDA
#include "tensor/cuda/cuda_context.h"
#endif

namespace pt {
namespace {

using sparse::LinearKernel;

// One pruned model per (device, pattern), built on first use and kept for the following cases.
opt::OptForCausalLM& pruned_model(Device dev, bool two_four) {
  static std::map<std::pair<int, bool>, std::unique_ptr<opt::OptForCausalLM>> cache;
  auto& slot = cache[{int(dev), two_four}];
  if (!slot) {
    cache.clear();  // one model in memory at a time (an OPT-1.3B in bf16 is 2.6 GB)
    auto& fresh = cache[{int(dev), two_four}];
    const bool cuda = dev == Device::cuda;
    fresh = std::make_unique<opt::OptForCausalLM>(opt::opt_preset(cuda ? "1.3b" : "125m"), dev, 1);
    prune::SequentialPruneOptions po;
    po.method = prune::PruneMethod::magnitude;
    po.pattern = two_four ? prune::SparsityPattern::nm(2, 4) : prune::SparsityPattern::unstructured(0.5);
    po.measure_reconstruction = false;
    po.show_progress = false;
    prune::prune_model(*fresh, Tensor(), po);
    if (cuda) fresh->to(DType::bf16);
    fresh->eval();
    return *fresh;
  }
  return *slot;
}

void wait(Device dev) {
#if PT_CUDA
  if (dev == Device::cuda) cuda::synchronize();
#else
  (void)dev;
#endif
}

double seconds_of(Device dev, const std::function<void()>& fn) {
  wait(dev);
  const auto start = std::chrono::steady_clock::now();
  fn();
  wait(dev);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void BM_model(benchmark::State& state, LinearKernel kernel, Device dev, bool two_four, bool decode) {
  if (dev == Device::cuda && !bench::require_cuda(state)) return;
  autograd::NoGradGuard no_grad;
  opt::OptForCausalLM& model = pruned_model(dev, two_four);
  const bool cuda = dev == Device::cuda;
  nn::LinearKernelOptions lo;
  lo.kernel = kernel;
  lo.auto_options.prefill_tokens = cuda ? 2048 : 128;
  nn::LinearKernelReport report;
  try {
    report = nn::use_linear_kernel(model.linear_layers(), lo);
  } catch (const Error& e) {
    state.SkipWithError(e.what());
    return;
  }
  Generator gen(3);
  const int64_t vocab = model.config().vocab_size;
  const int64_t prefill = cuda ? 2048 : 128, prompt = cuda ? 128 : 32, steps = cuda ? 64 : 8;
  const Tensor window = Tensor::uniform({1, prefill}, 0, double(vocab), gen, DType::f32).to(DType::i64).to(dev);
  const Tensor prompt_ids = Tensor::uniform({1, prompt}, 0, double(vocab), gen, DType::f32).to(DType::i64).to(dev);
  const Tensor next = Tensor::full({1, 1}, 42.0, DType::i64, dev);
  double tokens = 0, seconds = 0;
  for (auto _ : state) {
    double s = 0;
    if (decode) {
      opt::KVCache cache = model.make_cache(prompt + steps);
      (void)model.forward(prompt_ids, &cache);
      s = seconds_of(dev, [&] {
        for (int64_t i = 0; i < steps; ++i) (void)model.forward(next, &cache);
      });
      tokens += double(steps);
    } else {
      s = seconds_of(dev, [&] { (void)model.forward(window); });
      tokens += double(prefill);
    }
    seconds += s;
    state.SetIterationTime(s);
  }
  state.counters["tokens/s"] = tokens / seconds;
  state.counters["pruned_weights_MB"] = double(report.layers.empty() ? 0 : report.stored_bytes) / 1e6;
  nn::clear_linear_kernels(model.linear_layers());
}

int register_benchmarks() {
  using benchmark::RegisterBenchmark;
  for (Device dev : {Device::cpu, Device::cuda})
    for (bool decode : {false, true})
      for (bool two_four : {false, true})
        for (LinearKernel k : {LinearKernel::dense, LinearKernel::masked, LinearKernel::csr, LinearKernel::bitmap,
                               LinearKernel::two_four, LinearKernel::auto_select}) {
          if ((k == LinearKernel::two_four) != two_four && k != LinearKernel::dense && k != LinearKernel::auto_select)
            continue;
          const std::string name = std::string("opt_") + (dev == Device::cuda ? "1.3b/cuda/" : "125m/cpu/") +
                                   (decode ? "decode/" : "prefill/") + (two_four ? "2:4/" : "50%/") +
                                   sparse::linear_kernel_name(k);
          RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { BM_model(st, k, dev, two_four, decode); })
              ->Unit(benchmark::kMillisecond)
              ->UseManualTime()
              ->Iterations(dev == Device::cuda ? 5 : 2);
        }
  return 0;
}
const int registered = register_benchmarks();

}  // namespace
}  // namespace pt
