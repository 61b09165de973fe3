// The running-average Hessian: fused (one syrk) and unfused (matmul + scale + add) against a naive double
// sum over every token, the bf16-input option, symmetry (batches write the upper triangle, the read mirrors it
// once), errors, and CUDA against the CPU.
#include "prune/hessian.h"
#include "tests/test_util.h"
#if PT_CUDA
#include "tensor/cuda/cuda_context.h"
#endif

namespace pt::prune {
namespace {

using test::expect_error;
using test::random_tensor;

// (2/n) Σ over all tokens of x xᵀ in double, n = sequences in total.
Tensor naive_hessian(const std::vector<Tensor>& batches, int64_t nsamples, int64_t cols) {
  std::vector<double> h(size_t(cols * cols), 0.0);
  for (const Tensor& x : batches) {
    const std::vector<double> v = x.to_vector<double>();
    for (size_t t = 0; t < v.size(); t += size_t(cols))
      for (int64_t i = 0; i < cols; ++i)
        for (int64_t j = 0; j < cols; ++j) h[size_t(i * cols + j)] += 2.0 * v[t + size_t(i)] * v[t + size_t(j)];
  }
  for (double& e : h) e /= double(nsamples);
  return Tensor::from_vector<double>(h, {cols, cols});
}

struct Batch { Tensor x; int64_t sequences; };

std::vector<Batch> calibration_batches(int64_t cols, uint64_t seed, Device device = Device::cpu) {
  std::vector<Batch> out;
  for (int64_t b : {1, 3, 2, 4}) out.push_back({random_tensor({b, 9, cols}, seed++, -1.5, 1.5, DType::f32, device), b});
  out.push_back({random_tensor({2 * 9, cols}, seed, -1.5, 1.5, DType::f32, device), 2});  // tokens already flat
  return out;
}

TEST(Hessian, FusedAndUnfusedMatchTheNaiveRunningAverage) {
  const int64_t cols = 21;
  const std::vector<Batch> batches = calibration_batches(cols, 41);
  HessianAccumulator fused(cols, Device::cpu), unfused(cols, Device::cpu);
  std::vector<Tensor> seen;
  int64_t n = 0;
  for (const Batch& b : batches) {
    fused.add_batch(b.x, b.sequences, "fused");
    unfused.add_batch(b.x, b.sequences, "unfused");
    seen.push_back(b.x);
    n += b.sequences;
    const Tensor expected = naive_hessian(seen, n, cols).to(DType::f32);
    PT_EXPECT_CLOSE(fused.H(), expected, test::kReductionF32);
    PT_EXPECT_CLOSE(unfused.H(), expected, test::kReductionF32);
  }
  EXPECT_EQ(fused.nsamples, 12);
  EXPECT_EQ(unfused.nsamples, 12);
  EXPECT_TRUE(test::tensors_equal(fused.H(), fused.H().t().contiguous()));  // exactly symmetric when read
  EXPECT_TRUE(test::tensors_equal(unfused.H(), unfused.H().t().contiguous()));
}

// The strict lower triangle of H as a flat list (row-major order).
std::vector<double> strict_lower(const Tensor& h) {
  const std::vector<double> v = h.to_vector<double>();
  const int64_t n = h.size(0);
  std::vector<double> out;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < r; ++c) out.push_back(v[size_t(r * n + c)]);
  return out;
}

// The per-batch d² mirror is gone: a fused syrk batch leaves the lower triangle as the last read left it (the
// bf16 GEMM on CUDA computes both triangles, not exactly symmetric), and the next read completes it.
void expect_one_mirror_per_read(Device device, bool bf16) {
  const int64_t cols = 40;
  const std::vector<Batch> batches = calibration_batches(cols, 81, device);
  HessianAccumulator acc(cols, device), reference(cols, Device::cpu);
  acc.bf16_inputs = reference.bf16_inputs = bf16;
  acc.add_batch(batches[0].x, batches[0].sequences);
  reference.add_batch(batches[0].x.to(Device::cpu), batches[0].sequences);
  const Tensor h = acc.H();  // shares the accumulator's storage
  const std::vector<double> lower_before = strict_lower(h);
  acc.add_batch(batches[1].x, batches[1].sequences);
  reference.add_batch(batches[1].x.to(Device::cpu), batches[1].sequences);
  if (device == Device::cpu || !bf16) {
    EXPECT_EQ(strict_lower(h), lower_before);  // not mirrored by the batch
  }
  EXPECT_NE(strict_lower(h.t().contiguous()), lower_before);  // but the upper triangle moved on
  PT_EXPECT_CLOSE(acc.H().to(Device::cpu), reference.H(), test::kReductionF32);
  EXPECT_TRUE(test::tensors_equal(acc.H(), acc.H().t().contiguous()));
}

TEST(Hessian, BatchesWriteTheUpperTriangleAndTheReadMirrorsItOnce) {
  expect_one_mirror_per_read(Device::cpu, false);
  expect_one_mirror_per_read(Device::cpu, true);
}

TEST(Hessian, Bf16InputsRoundTheActivationsOnly) {
  const int64_t cols = 16;
  const std::vector<Batch> batches = calibration_batches(cols, 51);
  for (const char* k : {"fused", "unfused", "bf16"}) {
    HessianAccumulator acc(cols, Device::cpu);
    acc.bf16_inputs = true;
    std::vector<Tensor> rounded;
    int64_t n = 0;
    for (const Batch& b : batches) {
      acc.add_batch(b.x, b.sequences, k);
      rounded.push_back(b.x.to(DType::bf16).to(DType::f32));
      n += b.sequences;
    }
    PT_EXPECT_CLOSE(acc.H(), naive_hessian(rounded, n, cols).to(DType::f32), test::kReductionF32);
  }
}

TEST(Hessian, HalfInputsAreWidened) {
  const int64_t cols = 12;
  const Tensor x = random_tensor({3, 5, cols}, 61).to(DType::f16);
  HessianAccumulator acc(cols, Device::cpu);
  acc.add_batch(x, 3);
  PT_EXPECT_CLOSE(acc.H(), naive_hessian({x.to(DType::f32)}, 3, cols).to(DType::f32), test::kReductionF32);
}

TEST(Hessian, ErrorsNameTheProblem) {
  HessianAccumulator none;
  expect_error([&] { none.add_batch(Tensor::ones({2, 3}), 1); }, "no Hessian yet");
  HessianAccumulator acc(3, Device::cpu);
  expect_error([&] { acc.add_batch(Tensor::ones({2, 4}), 1); }, "should be [..., 3]");
  expect_error([&] { acc.add_batch(Tensor::ones({2, 3}), 0); }, "sequences = 0");
  expect_error([&] { acc.add_batch(Tensor::ones({2, 3}, DType::f64), 1); }, "allowed: f32, f16, bf16");
  expect_error([] { HessianAccumulator(0, Device::cpu); }, "cols = 0");
  expect_error([&] { acc.add_batch(Tensor::ones({2, 3}), 1, "blas"); }, "has no variant 'blas' (registered: reference");
  EXPECT_EQ(acc.nsamples, 0);  // a refused batch changes nothing
}

TEST(CudaHessian, FusedUnfusedAndBf16MatchTheCpu) {
  PT_SKIP_IF_NO_CUDA();
  const int64_t cols = 96;
  const std::vector<Batch> batches = calibration_batches(cols, 71);
  for (bool bf16 : {false, true}) {
    HessianAccumulator cpu(cols, Device::cpu), fused(cols, Device::cuda), unfused(cols, Device::cuda);
    cpu.bf16_inputs = fused.bf16_inputs = unfused.bf16_inputs = bf16;
    for (const Batch& b : batches) {
      cpu.add_batch(b.x, b.sequences);
      fused.add_batch(b.x.to(Device::cuda), b.sequences, "fused");
      unfused.add_batch(b.x.to(Device::cuda), b.sequences, "unfused");
    }
    PT_EXPECT_CLOSE(fused.H().to(Device::cpu), cpu.H(), test::kReductionF32);
    PT_EXPECT_CLOSE(unfused.H().to(Device::cpu), cpu.H(), test::kReductionF32);
    EXPECT_TRUE(test::tensors_equal(fused.H(), fused.H().t().contiguous())) << "bf16 " << bf16;
    EXPECT_TRUE(test::tensors_equal(unfused.H(), unfused.H().t().contiguous())) << "bf16 " << bf16;
  }
}

TEST(CudaHessian, BatchesWriteTheUpperTriangleAndTheReadMirrorsItOnce) {
  PT_SKIP_IF_NO_CUDA();
  expect_one_mirror_per_read(Device::cuda, false);
  expect_one_mirror_per_read(Device::cuda, true);  // the bf16 GemmEx path
}

#if PT_CUDA
TEST(CudaHessian, EmptyInputsLaunchNothingInvalid) {
  PT_SKIP_IF_NO_CUDA();
  // d = 0: nothing to update (cuBLAS would reject a leading dimension of 0, a mirror grid would be empty).
  const Tensor h0 = Tensor::zeros({0, 0}, DType::f32, Device::cuda);
  EXPECT_NO_THROW(detail::cuda_syrk_bf16(h0, Tensor::empty({5, 0}, DType::bf16, Device::cuda), 1.0, 0.0));
  EXPECT_NO_THROW(syrk_(h0, Tensor::empty({5, 0}, DType::f32, Device::cuda), 1.0, 0.0));
  EXPECT_NO_THROW(symmetrize_(h0));
  // No tokens: H only scales by beta.
  const Tensor h = test::random_tensor({6, 6}, 91, -1, 1, DType::f32, Device::cuda);
  const Tensor expected = mul_scalar(h, 0.5).to(Device::cpu);
  detail::cuda_syrk_bf16(h, Tensor::empty({0, 6}, DType::bf16, Device::cuda), 1.0, 0.5);
  EXPECT_TRUE(test::tensors_equal(h.to(Device::cpu), expected));
  EXPECT_NO_THROW(cuda::synchronize());
}
#endif

}  // namespace
}  // namespace pt::prune
