// Sparse linear forward y = x·Wᵀ + b of one pruned OPT-1.3B layer, every kernel on the same weight and input:
//   dense    cuBLAS (BLAS on the CPU) on W with its zeros: the baseline
//   masked   W⊙M formed every call, then the dense product (torch.nn.utils.prune's way)
//   csr      cuSPARSE SpMM on CSR (the CPU reference loop on the CPU)
//   bitmap   this code base's unstructured kernels (decode: a warp per row; prefill: tiles expanded into shared
//            memory and multiplied on tensor cores)
//   2of4     this code base's mma.sp kernel on the 2:4 compressed layout (50 % only)
// Shapes [out, in]: 2048x2048 (q/k/v/out_proj), 8192x2048 (fc1), 2048x8192 (fc2); tokens 1, 16, 128, 2048;
// sparsity 50/70/80/90 % (dense and masked do not depend on it and run once per shape, as "0%").
// GPU: f16 weights and activations, f32 accumulation, CUDA events (manual time). CPU: f32, tokens up to 128; on
// an AVX-512 CPU the formats with AVX-512 few-token kernels (dense at 2..16 tokens, bitmap and 2of4 at one) also
// run forced onto their portable loops ("/portable"), to show what those kernels gain. Counters: FLOP/s of the dense-equivalent product
// (2·tokens·in·out, so a faster kernel shows a higher number for the same work), bytes/s of what the kernel
// must read and write at least (its stored weight + x + y), and weight_MB (the stored form).
#include <optional>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "sparse/cpu_isa.h"
#include "sparse/packed_linear.h"

namespace pt {
namespace {

using sparse::LinearKernel;

struct LinearShape { int64_t out, in; };
const std::vector<LinearShape> kShapes = {{2048, 2048}, {8192, 2048}, {2048, 8192}};

// W with exactly `sparsity` of its entries pruned at random (or 2:4), zeros stored, and its keep-mask.
struct PrunedWeight { Tensor w, keep; };
PrunedWeight pruned_weight(int64_t out, int64_t in, double sparsity, bool two_four, Device dev) {
  Generator gen(42);
  const Tensor w = Tensor::normal({out, in}, 0.0, 0.02, gen, DType::f32, Device::cpu);
  const Tensor u = Tensor::uniform({out, in}, 0.0, 1.0, gen, DType::f32, Device::cpu);
  Tensor keep;
  if (two_four) {
    // Keep the two largest of u in every group of 4 (a random 2:4 pattern).
    std::vector<uint8_t> k(size_t(out * in), 0);
    const float* p = u.data<float>();
    for (int64_t g = 0; g < out * in / 4; ++g) {
      int a = 0, b = 1;
      if (p[4 * g + b] > p[4 * g + a]) std::swap(a, b);
      for (int j = 2; j < 4; ++j) {
        if (p[4 * g + j] > p[4 * g + a]) { b = a; a = j; }
        else if (p[4 * g + j] > p[4 * g + b]) b = j;
      }
      k[size_t(4 * g + a)] = k[size_t(4 * g + b)] = 1;
    }
    keep = Tensor::from_vector(k, {out, in});
  } else {
    keep = compare_scalar(u, sparsity, CompareOp::ge);  // kept with probability 1 - sparsity
  }
  return {apply_mask(w, keep).to(dev), keep.to(dev)};
}

void BM_sparse_linear(benchmark::State& state, LinearKernel kernel, Device dev, LinearShape s, int64_t tokens,
                      double sparsity, bool portable) {
  if (dev == Device::cuda && !bench::require_cuda(state)) return;
  std::optional<sparse::cpu::ScopedIsa> isa;
  if (portable) isa.emplace(sparse::cpu::Isa::portable);
  const DType dtype = dev == Device::cuda ? DType::f16 : DType::f32;
  const bool two_four = kernel == LinearKernel::two_four;
  const PrunedWeight pw = pruned_weight(s.out, s.in, two_four ? 0.5 : sparsity, two_four, dev);
  std::shared_ptr<sparse::PackedLinearWeight> packed;
  try {
    packed = sparse::pack_linear_weight(kernel, pw.w.to(dtype), kernel == LinearKernel::dense ? Tensor() : pw.keep,
                                        dtype, "bench.weight");
  } catch (const Error& e) {
    state.SkipWithError(e.what());
    return;
  }
  Generator gen(7);
  const Tensor x = Tensor::normal({tokens, s.in}, 0.0, 1.0, gen, dtype, dev);
  const Tensor bias = Tensor::normal({s.out}, 0.0, 0.1, gen, dtype, dev);
  if (dev == Device::cuda) {
    bench::time_cuda(state, [&] { (void)packed->forward(x, bias); });
  } else {
    for (auto _ : state) benchmark::DoNotOptimize(packed->forward(x, bias));
  }
  const double elem = double(dtype_size(dtype));
  bench::set_flops(state, 2.0 * double(tokens) * double(s.in) * double(s.out));
  bench::set_bytes(state, double(packed->stored_bytes()) + elem * double(tokens) * double(s.in + s.out));
  state.counters["weight_MB"] = double(packed->stored_bytes()) / 1e6;
}

int register_benchmarks() {
  using benchmark::RegisterBenchmark;
  for (Device dev : {Device::cpu, Device::cuda}) {
    const bool cuda = dev == Device::cuda;
    const std::vector<int64_t> tokens = cuda ? std::vector<int64_t>{1, 16, 128, 2048} : std::vector<int64_t>{1, 16, 128};
    for (const LinearShape& s : kShapes)
      for (int64_t t : tokens) {
        struct Case { LinearKernel k; double sparsity; bool portable = false; };
        std::vector<Case> cases = {{LinearKernel::dense, 0.0}, {LinearKernel::masked, 0.0}};
        for (double sp : {0.5, 0.7, 0.8, 0.9})
          for (LinearKernel k : {LinearKernel::csr, LinearKernel::bitmap}) cases.push_back({k, sp});
        cases.push_back({LinearKernel::two_four, 0.5});
        // The formats with AVX-512 kernels for few tokens, once more on the portable loops (BLAS for dense).
        if (!cuda && sparse::cpu::avx512_supported() && t <= 16)
          for (const Case& c : {Case{LinearKernel::dense, 0.0, true}, Case{LinearKernel::bitmap, 0.9, true},
                                Case{LinearKernel::two_four, 0.5, true}})
            cases.push_back(c);
        for (const Case& c : cases) {
          const std::string name = "sparse_linear/" + sparse::linear_kernel_name(c.k) + (cuda ? "/cuda/" : "/cpu/") +
                                   std::to_string(s.out) + "x" + std::to_string(s.in) + "/t" + std::to_string(t) +
                                   "/" + std::to_string(int(c.sparsity * 100 + 0.5)) + "%" +
                                   (c.portable ? "/portable" : "");
          auto* b = RegisterBenchmark(name.c_str(), [=](benchmark::State& st) {
            BM_sparse_linear(st, c.k, dev, s, t, c.sparsity, c.portable);
          });
          b->Unit(benchmark::kMicrosecond);
          if (cuda) b->UseManualTime();
          else b->UseRealTime()->MinTime(0.2);
        }
      }
  }
  return 0;
}
const int registered = register_benchmarks();

}  // namespace
}  // namespace pt
