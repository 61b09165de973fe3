// The pruning kernels, each fused implementation beside its unfused composition (and the CPU reference):
//   hessian      H = beta·H + alpha·XᵀX for one calibration batch: one syrk (fused) vs matmul + scale + add
//   cholesky     U = chol(chol_inverse(chol(H + damp·I)), upper): the damped inverse factor SparseGPT needs
//   obs_sweep    the in-block OBS sweep of one 128-column block (50% unstructured mask, and 2:4 chosen inside)
//   mask         select_mask: one threshold per matrix, per row, and 2:4
//   sparsegpt    sparsegpt_prune of one whole matrix at 50% (all of the above, blocks of 128)
// GPU shapes are the Linear layers of OPT-125M and OPT-1.3B ([out, in]: 768x768, 3072x768, 768x3072, 2048x2048,
// 8192x2048, 2048x8192; a Hessian is [in, in]); CPU shapes stay small (256 and 768) so the whole program runs in
// a couple of minutes. GPU cases use CUDA events (manual time) and skip with a message when there is no GPU.
// Counters: FLOP/s of the nominal arithmetic (hessian 2·tokens·cols², cholesky 4/3·n³ (three O(n³/3) passes,
// cholesky_inverse counted as 2/3·n³), obs_sweep rows·B² (the rank-1 updates), sparsegpt rows·cols² (the
// deferred GEMMs) + sweeps) or bytes/s for masks (4-byte score + 1-byte mask per element).
#include <algorithm>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "prune/hessian.h"
#include "prune/mask.h"
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

void BM_hessian(benchmark::State& state, HessianKernel kernel, Device dev, int64_t cols, int64_t tokens) {
  if (dev == Device::cuda && !bench::require_cuda(state)) return;
  Generator gen(2);
  const Tensor x = Tensor::normal({tokens, cols}, 0.0, 1.0, gen, DType::f32, dev);
  HessianAccumulator acc(cols, dev);
  run(state, dev, [&] { acc.add_batch(x, 1, kernel); });
  bench::set_flops(state, 2.0 * double(tokens) * double(cols) * double(cols));
}

void BM_cholesky(benchmark::State& state, Device dev, int64_t n) {
  if (dev == Device::cuda && !bench::require_cuda(state)) return;
  const Tensor H = random_hessian(n, dev);
  run(state, dev, [&] { damped_inverse_factor(H, 0.01, 0); });
  bench::set_flops(state, 4.0 / 3.0 * double(n) * double(n) * double(n));
}

void BM_obs_sweep(benchmark::State& state, PruneKernel kernel, Device dev, int64_t rows, SparsityPattern pattern) {
  if (dev == Device::cuda && !bench::require_cuda(state)) return;
  Generator gen(3);
  const Tensor W0 = Tensor::normal({rows, kBlock}, 0.0, 1.0, gen, DType::f32, dev);
  const Tensor W1 = W0.clone();
  const Tensor U1 = damped_inverse_factor(random_hessian(kBlock, dev), 0.01, 0).U;
  const Tensor keep0 = compare_scalar(Tensor::uniform({rows, kBlock}, 0, 1, gen, DType::f32, dev), 0.5, CompareOp::ge);
  const Tensor keep1 = keep0.clone(), Err1 = Tensor::empty({rows, kBlock}, DType::f32, dev);
  const Tensor loss = Tensor::zeros({rows}, DType::f32, dev);
  run(state, dev, [&] {
    Tensor(W1).copy_(W0);  // the same block every time (the sweep prunes in place)
    obs_sweep_block(W1, U1, keep1, Err1, loss, pattern, {}, kernel);
  });
  bench::set_flops(state, double(rows) * double(kBlock) * double(kBlock));
}

void BM_mask(benchmark::State& state, PruneKernel kernel, Device dev, int64_t rows, int64_t cols,
             SparsityPattern pattern, MaskGroup group) {
  if (dev == Device::cuda && !bench::require_cuda(state)) return;
  Generator gen(4);
  const Tensor scores = Tensor::uniform({rows, cols}, 0, 1, gen, DType::f32, dev);
  run(state, dev, [&] { select_mask(scores, pattern, group, {}, kernel); });
  bench::set_bytes(state, 5.0 * double(rows) * double(cols));
}

void BM_sparsegpt(benchmark::State& state, PruneKernel kernel, Device dev, int64_t rows, int64_t cols) {
  if (dev == Device::cuda && !bench::require_cuda(state)) return;
  Generator gen(5);
  const Tensor W0 = Tensor::normal({rows, cols}, 0.0, 1.0, gen, DType::f32, dev);
  Tensor W = W0.clone();
  const Tensor H = random_hessian(cols, dev);
  SparseGptOptions opt;
  opt.kernel = kernel;
  run(state, dev, [&] {
    W.copy_(W0);
    sparsegpt_prune(W, H, SparsityPattern::unstructured(0.5), {}, opt);
  });
  const double n = double(cols);
  bench::set_flops(state, double(rows) * n * n + double(rows) * n * double(kBlock) + 4.0 / 3.0 * n * n * n);
}

int register_benchmarks() {
  using benchmark::RegisterBenchmark;
  auto add = [](const std::string& name, Device dev, auto fn) {
    auto* b = RegisterBenchmark(name.c_str(), fn)->Unit(benchmark::kMillisecond);
    if (dev == Device::cuda) b->UseManualTime();
    else b->UseRealTime();
  };
  auto distinct = [](const std::vector<LinearShape>& shapes, int64_t LinearShape::*dim) {
    std::vector<int64_t> out;
    for (const LinearShape& s : shapes)
      if (std::find(out.begin(), out.end(), s.*dim) == out.end()) out.push_back(s.*dim);
    return out;
  };
  const SparsityPattern half = SparsityPattern::unstructured(0.5), two_four = SparsityPattern::nm(2, 4);
  for (Device dev : {Device::cpu, Device::cuda}) {
    const bool cuda = dev == Device::cuda;
    const std::string on = cuda ? "/cuda/" : "/cpu/";
    const auto& shapes = cuda ? kGpuShapes : kCpuShapes;
    // The CPU compares the reference loops with the op composition; CUDA the op composition with the kernels.
    const std::vector<PruneKernel> kernels = cuda ? std::vector<PruneKernel>{PruneKernel::unfused, PruneKernel::fused}
                                                  : std::vector<PruneKernel>{PruneKernel::reference, PruneKernel::unfused};
    const int64_t tokens = cuda ? 2048 : 512;  // one 2048-token calibration sequence per batch on the GPU
    for (int64_t cols : distinct(shapes, &LinearShape::in))
      for (HessianKernel k : {HessianKernel::unfused, HessianKernel::fused})
        add("hessian/" + std::string(hessian_kernel_name(k)) + on + std::to_string(tokens) + "x" + std::to_string(cols),
            dev, [=](benchmark::State& st) { BM_hessian(st, k, dev, cols, tokens); });
    for (int64_t cols : distinct(shapes, &LinearShape::in))
      add("cholesky" + on + std::to_string(cols), dev, [=](benchmark::State& st) { BM_cholesky(st, dev, cols); });
    for (int64_t rows : distinct(shapes, &LinearShape::out))
      for (const SparsityPattern& p : {half, two_four})
        for (PruneKernel k : kernels)
          add("obs_sweep/" + std::string(prune_kernel_name(k)) + on + std::to_string(rows) + "x" +
                  std::to_string(kBlock) + "/" + (p.is_nm() ? "2:4" : "50%"),
              dev, [=](benchmark::State& st) { BM_obs_sweep(st, k, dev, rows, p); });
    for (const LinearShape& s : shapes)
      for (int what = 0; what < 3; ++what)
        for (PruneKernel k : kernels) {
          const char* names[] = {"matrix50%", "row50%", "2:4"};
          const SparsityPattern p = what == 2 ? two_four : half;
          const MaskGroup g = what == 1 ? MaskGroup::row : MaskGroup::matrix;
          add("mask/" + std::string(prune_kernel_name(k)) + on + std::to_string(s.out) + "x" + std::to_string(s.in) +
                  "/" + names[what],
              dev, [=](benchmark::State& st) { BM_mask(st, k, dev, s.out, s.in, p, g); });
        }
    for (const LinearShape& s : shapes)  // on the CPU, fused runs the reference loops
      for (PruneKernel k : cuda ? kernels : std::vector<PruneKernel>{PruneKernel::fused})
        add("sparsegpt/" + std::string(cuda ? prune_kernel_name(k) : "reference") + on + std::to_string(s.out) + "x" +
                std::to_string(s.in) + "/50%",
            dev, [=](benchmark::State& st) { BM_sparsegpt(st, k, dev, s.out, s.in); });
  }
  return 0;
}
const int registered = register_benchmarks();

}  // namespace
}  // namespace pt
