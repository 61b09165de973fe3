// Core op benchmarks on the CPU and (when a GPU is usable) CUDA: element-wise bandwidth, matrix
// products in FLOP/s, and the row ops of a transformer layer. CPU shapes stay small so `make bench`
// finishes in minutes; GPU cases use CUDA-event manual time.
#include "bench/bench_util.h"

namespace pt {
namespace {

Device device_of(benchmark::State& state) { return state.range(0) ? Device::cuda : Device::cpu; }

// Runs fn timed on the chosen device; false when the case was skipped.
template <class F> bool run(benchmark::State& state, Device dev, F&& fn) {
  if (dev == Device::cuda) {
    if (!bench::require_cuda(state)) return false;
    bench::time_cuda(state, fn);
  } else {
    for (auto _ : state) fn();
  }
  return true;
}

// y = a + b, n floats: reads 2n, writes n.
void BM_add(benchmark::State& state) {
  Device dev = device_of(state);
  int64_t n = state.range(1);
  if (dev == Device::cuda && !cuda_is_available()) return (void)bench::require_cuda(state);
  Generator g(0);
  Tensor a = Tensor::uniform({n}, -1, 1, g, DType::f32, dev), b = Tensor::uniform({n}, -1, 1, g, DType::f32, dev);
  Tensor out = Tensor::empty({n}, DType::f32, dev);
  if (run(state, dev, [&] { binary_(out, a, b, BinaryOp::add); })) bench::set_bytes(state, 3.0 * 4 * double(n));
}

// C[M,N] = A[M,K] B[K,N]^T in the dtype given (2 = f32, 3 = bf16 on CUDA).
void BM_matmul(benchmark::State& state) {
  Device dev = device_of(state);
  int64_t m = state.range(1), n = state.range(2), k = state.range(3);
  DType dt = state.range(4) == 3 ? DType::bf16 : DType::f32;
  if (dev == Device::cuda && !cuda_is_available()) return (void)bench::require_cuda(state);
  Generator g(0);
  Tensor a = Tensor::uniform({m, k}, -1, 1, g, DType::f32, dev).to(dt);
  Tensor b = Tensor::uniform({n, k}, -1, 1, g, DType::f32, dev).to(dt);
  Tensor c = Tensor::empty({m, n}, dt, dev);
  if (run(state, dev, [&] { gemm_(c, a, b, false, true, 1.0, 0.0); })) bench::set_flops(state, 2.0 * double(m * n * k));
}

// Softmax and layer norm over rows of width c (attention rows, hidden states).
void BM_softmax(benchmark::State& state) {
  Device dev = device_of(state);
  int64_t rows = state.range(1), c = state.range(2);
  if (dev == Device::cuda && !cuda_is_available()) return (void)bench::require_cuda(state);
  Generator g(0);
  Tensor x = Tensor::uniform({rows, c}, -4, 4, g, DType::f32, dev);
  if (run(state, dev, [&] { benchmark::DoNotOptimize(softmax(x)); })) bench::set_bytes(state, 2.0 * 4 * double(rows * c));
}

void BM_layer_norm(benchmark::State& state) {
  Device dev = device_of(state);
  int64_t rows = state.range(1), c = state.range(2);
  if (dev == Device::cuda && !cuda_is_available()) return (void)bench::require_cuda(state);
  Generator g(0);
  Tensor x = Tensor::uniform({rows, c}, -1, 1, g, DType::f32, dev);
  Tensor w = Tensor::ones({c}, DType::f32, dev), b = Tensor::zeros({c}, DType::f32, dev);
  if (run(state, dev, [&] { benchmark::DoNotOptimize(layer_norm(x, w, b, 1e-5)); }))
    bench::set_bytes(state, 2.0 * 4 * double(rows * c));
}

// Fused log-softmax + NLL over the vocabulary (the LM loss).
void BM_cross_entropy(benchmark::State& state) {
  Device dev = device_of(state);
  int64_t rows = state.range(1), v = state.range(2);
  if (dev == Device::cuda && !cuda_is_available()) return (void)bench::require_cuda(state);
  Generator g(0);
  Tensor logits = Tensor::uniform({rows, v}, -4, 4, g, DType::f32, dev);
  Tensor targets = Tensor::arange(0, rows, 1, DType::i64, dev);
  if (run(state, dev, [&] { benchmark::DoNotOptimize(cross_entropy(logits, targets).loss); }))
    bench::set_bytes(state, 4.0 * double(rows * v));
}

// CPU cases measure wall time; CUDA cases use CUDA-event manual time (set by bench::time_cuda).
int register_benchmarks() {
  using benchmark::RegisterBenchmark;
  RegisterBenchmark("add/cpu", BM_add)->ArgNames({"cuda", "n"})->Args({0, 1 << 20})->UseRealTime();
  RegisterBenchmark("add/cuda", BM_add)->ArgNames({"cuda", "n"})->Args({1, 1 << 24})->UseManualTime();
  RegisterBenchmark("matmul/cpu", BM_matmul)->ArgNames({"cuda", "m", "n", "k", "dtype"})
      ->Args({0, 256, 768, 768, 2})->UseRealTime();
  RegisterBenchmark("matmul/cuda", BM_matmul)->ArgNames({"cuda", "m", "n", "k", "dtype"})
      ->Args({1, 2048, 2048, 2048, 2})->Args({1, 2048, 8192, 2048, 3})->UseManualTime();
  RegisterBenchmark("softmax/cpu", BM_softmax)->ArgNames({"cuda", "rows", "c"})->Args({0, 1024, 512})->UseRealTime();
  RegisterBenchmark("softmax/cuda", BM_softmax)->ArgNames({"cuda", "rows", "c"})->Args({1, 32768, 2048})->UseManualTime();
  RegisterBenchmark("layer_norm/cpu", BM_layer_norm)->ArgNames({"cuda", "rows", "c"})->Args({0, 512, 768})->UseRealTime();
  RegisterBenchmark("layer_norm/cuda", BM_layer_norm)->ArgNames({"cuda", "rows", "c"})->Args({1, 16384, 2048})
      ->UseManualTime();
  RegisterBenchmark("cross_entropy/cpu", BM_cross_entropy)->ArgNames({"cuda", "rows", "vocab"})
      ->Args({0, 128, 50272})->UseRealTime();
  RegisterBenchmark("cross_entropy/cuda", BM_cross_entropy)->ArgNames({"cuda", "rows", "vocab"})
      ->Args({1, 4096, 50272})->UseManualTime();
  return 0;
}
const int registered = register_benchmarks();

}  // namespace
}  // namespace pt
