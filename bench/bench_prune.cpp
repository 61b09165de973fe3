// SparseGPT on one whole matrix at 50 % (dead columns, damped inverse factor, blocks of 128: mask, OBS sweep,
// deferred update), under each shorthand (`kernels = fused | unfused`: tensor/kernel_registry.h). The kernels
// inside it (Hessian, inverse factor, OBS sweep, mask) are measured one by one, every registered variant against
// the roofline, by bench_kernel_lab.
// GPU shapes are the Linear layers of OPT-125M and OPT-1.3B ([out, in]: 768x768, 3072x768, 768x3072, 2048x2048,
// 8192x2048, 2048x8192); CPU shapes stay small (256 and 768). GPU cases use CUDA events (manual time) and skip with
// a message when there is no GPU. Counter: FLOP/s of the nominal arithmetic, rows·cols² (the deferred GEMMs) +
// the sweeps + 4/3·cols³ (the inverse factor).
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "prune/hessian.h"
#include "prune/obs_sweep.h"
#include "prune/sparsegpt.h"

namespace pt {
namespace {

using namespace pt::prune;

constexpr int64_t kBlock = 128;

struct LinearShape { int64_t out, in; };
const std::vector<LinearShape> kGpuShapes = {{768, 768}, {3072, 768}, {768, 3072}, {2048, 2048}, {8192, 2048}, {2048, 8192}};
const std::vector<LinearShape> kCpuShapes = {{256, 256}, {768, 768}};

// A positive definite Hessian of correlated inputs (damped like SparseGPT does).
Tensor random_hessian(int64_t cols, Device dev) {
  Generator gen(1);
  const Tensor x = Tensor::normal({2 * cols, cols}, 0.0, 1.0, gen, DType::f32, dev);
  HessianAccumulator acc(cols, dev);
  acc.add_batch(x, 2);
  return acc.H();
}

// Runs `fn` per iteration: CUDA events on the GPU, wall time on the CPU.
template <class F> void run(benchmark::State& state, Device dev, F&& fn) {
  if (dev == Device::cuda) {
    bench::time_cuda(state, fn);
  } else {
    for (auto _ : state) fn();
  }
}

void BM_sparsegpt(benchmark::State& state, const std::string& shorthand, Device dev, int64_t rows, int64_t cols) {
  if (dev == Device::cuda && !bench::require_cuda(state)) return;
  kernels::ScopedSelection use;
  use.shorthand(shorthand);
  Generator gen(5);
  const Tensor W0 = Tensor::normal({rows, cols}, 0.0, 1.0, gen, DType::f32, dev);
  Tensor W = W0.clone();
  const Tensor H = random_hessian(cols, dev);
  run(state, dev, [&] {
    W.copy_(W0);
    sparsegpt_prune(W, H, SparsityPattern::unstructured(0.5), {});
  });
  const double n = double(cols);
  bench::set_flops(state, double(rows) * n * n + double(rows) * n * double(kBlock) + 4.0 / 3.0 * n * n * n);
}

int register_benchmarks() {
  for (Device dev : {Device::cpu, Device::cuda}) {
    const bool cuda = dev == Device::cuda;
    for (const LinearShape& s : cuda ? kGpuShapes : kCpuShapes)
      for (const std::string shorthand : {"unfused", "fused"}) {
        // The variants the shorthand picks on this device, e.g. "reference" for the OBS sweep on the CPU.
        const std::string sweep = obs_sweep_family().shorthand_variant(shorthand, dev);
        const std::string name = "sparsegpt/" + shorthand + "(sweep " + sweep + ")" + (cuda ? "/cuda/" : "/cpu/") +
                                 std::to_string(s.out) + "x" + std::to_string(s.in) + "/50%";
        auto* b = benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) {
          BM_sparsegpt(st, shorthand, dev, s.out, s.in);
        })->Unit(benchmark::kMillisecond);
        if (cuda) b->UseManualTime();
        else b->UseRealTime();
      }
  }
  return 0;
}
const int registered = register_benchmarks();

}  // namespace
}  // namespace pt
