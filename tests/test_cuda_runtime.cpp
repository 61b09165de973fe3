// CUDA runtime pieces: the caching allocator reuses blocks (no cudaMalloc in steady state), a binary built
// with CUDA still runs on the CPU when no device is present, launch sizes are valid at zero work, and
// device-side index checks are reported at the next synchronisation (their bookkeeping tested on the CPU).
#include <gtest/gtest.h>

#include "tensor/cuda/deferred_checks.h"
#include "tensor/cuda/launch.h"
#include "tensor/ops.h"
#include "tests/test_util.h"
#if PT_CUDA
#include "tensor/cuda/caching_allocator.h"
#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/cuda_context.h"
#endif

namespace pt {
namespace {

TEST(Runtime, CpuPathWorksWhateverTheBuild) {
  // Runs in every build: device auto must resolve to something usable and compute there.
  Device d = parse_device("auto");
  Tensor x = test::random_tensor({8}, 1, -1, 1, DType::f32, d);
  EXPECT_EQ(x.device(), d);
  EXPECT_EQ(relu(x).to(Device::cpu).to_vector<double>(), relu(x.to(Device::cpu)).to_vector<double>());
}

TEST(LaunchGeometry, GridForIsNeverEmptyAndCoversEveryItem) {
  using pt::cuda::grid_for;
  EXPECT_EQ(grid_for(0), 1u);  // a zero-block launch is a CUDA error: one idle block instead
  EXPECT_EQ(grid_for(-5), 1u);
  EXPECT_EQ(grid_for(1), 1u);
  EXPECT_EQ(grid_for(256), 1u);
  EXPECT_EQ(grid_for(257), 2u);
  EXPECT_EQ(grid_for(0, 1), 1u);  // one row per block
  EXPECT_EQ(grid_for(7, 1), 7u);
  EXPECT_EQ(grid_for(int64_t(1) << 40), unsigned(pt::cuda::kMaxGridBlocks));  // grid-stride loops cover the rest
  for (int64_t n : {1, 255, 256, 1000, 65535, 1 << 20}) {
    const int64_t blocks = grid_for(n, 128);
    EXPECT_GE(blocks * 128, n) << n;
    EXPECT_LT((blocks - 1) * 128, n) << n;  // no block that could never get an item
  }
}

// ---- the bookkeeping of device-side index checks (tensor/cuda/deferred_checks.h) -------------------------
using pt::cuda::check_key;
using pt::cuda::DeferredIndexChecks;
using pt::cuda::kNoFailure;

DeferredIndexChecks::Describe message(const std::string& op) {
  return [op](int64_t position) { return op + " failed at " + std::to_string(position); };
}

TEST(DeviceIndexChecks, TheEarliestFailingCheckAndItsFirstPositionAreReported) {
  DeferredIndexChecks checks;
  EXPECT_EQ(checks.add(10, message("embedding")), 0u);
  EXPECT_EQ(checks.add(10, message("cross_entropy")), 1u);
  EXPECT_EQ(checks.add(10, message("embedding_backward")), 2u);
  EXPECT_EQ(checks.pending(), 3u);
  // What atomicMin leaves after check 2 failed at 0, check 1 at 7 and at 3: check 1, position 3.
  const uint64_t word = std::min({check_key(2, 0), check_key(1, 7), check_key(1, 3)});
  EXPECT_EQ(checks.take_failure(word), "cross_entropy failed at 3");
  EXPECT_TRUE(checks.empty());  // reported: the next round starts at tag 0
  EXPECT_EQ(checks.add(4, message("embedding")), 0u);
  EXPECT_EQ(checks.take_failure(kNoFailure), "");
  EXPECT_TRUE(checks.empty());
}

TEST(DeviceIndexChecks, KeysOrderByCheckThenPosition) {
  EXPECT_LT(check_key(0, (int64_t(1) << 40) - 1), check_key(1, 0));
  EXPECT_LT(check_key(5, 2), check_key(5, 3));
  EXPECT_LT(check_key(DeferredIndexChecks::kMaxPending - 1, (int64_t(1) << 40) - 1), kNoFailure);
}

TEST(DeviceIndexChecks, LimitsAreErrors) {
  DeferredIndexChecks checks(2);
  checks.add(1, message("a"));
  checks.add(1, message("b"));
  EXPECT_TRUE(checks.full());
  test::expect_error([&] { checks.add(1, message("c")); }, "2 checks pending; report them first");
  test::expect_error([&] { DeferredIndexChecks().add(int64_t(1) << 40, message("d")); }, "positions exceed");
  test::expect_error([&] { checks.take_failure(check_key(5, 0)); }, "reported check 5 but only 2 were pending");
}

#if PT_CUDA
TEST(CudaDeviceChecks, ABadIdIsReportedAtTheNextSynchronisation) {
  PT_SKIP_IF_NO_CUDA();
  const Tensor w = test::random_tensor({6, 4}, 11, -1, 1, DType::f32, Device::cuda);
  const Tensor bad = Tensor::from_vector<int64_t>({1, 6, 2, 9}, {4}, Device::cuda);
  const Tensor logits = test::random_tensor({3, 5}, 12, -1, 1, DType::f32, Device::cuda);
  const Tensor targets = Tensor::from_vector<int64_t>({0, 5, -100}, {3}, Device::cuda);
  if (cuda::sync_check_enabled()) {  // PT_SYNC_CHECK=1: every launch synchronises, so the op itself throws
    test::expect_error([&] { embedding(w, bad); }, "embedding: id 6 at flat position 1");
  } else {
    Tensor y;
    EXPECT_NO_THROW(y = embedding(w, bad));                 // no host round trip at the op
    EXPECT_NO_THROW(cross_entropy(logits, targets, -100));  // a second bad check, later
    test::expect_error([&] { y.to(Device::cpu); }, "embedding: id 6 at flat position 1 of ids");
  }
  // Reported once; the device and the checks are usable afterwards.
  const Tensor good = Tensor::from_vector<int64_t>({5, 0}, {2}, Device::cuda);
  EXPECT_TRUE(test::tensors_equal(embedding(w, good).to(Device::cpu), embedding(w.to(Device::cpu), good.to(Device::cpu))));
  if (!cuda::sync_check_enabled()) {
    cross_entropy(logits, targets, -100);
    test::expect_error([] { cuda::synchronize(); }, "cross_entropy: target 5 at row 1 is out of range [0, 5)");
  }
  EXPECT_NO_THROW(cuda::synchronize());
}

TEST(CudaZeroSize, OpsOnEmptyTensorsLaunchNothingInvalid) {
  PT_SKIP_IF_NO_CUDA();
  const Device g = Device::cuda;
  const Tensor e = Tensor::empty({0, 5}, DType::f32, g);
  EXPECT_EQ(add(e, e).numel(), 0);
  EXPECT_EQ(e.to(DType::f16).numel(), 0);
  EXPECT_EQ(sum(e, 1).numel(), 0);
  EXPECT_EQ(sum(e, 0).to(Device::cpu).to_vector<double>(), std::vector<double>(5, 0.0));
  EXPECT_EQ(softmax(e).numel(), 0);
  EXPECT_EQ(layer_norm(e, Tensor::ones({5}, DType::f32, g), Tensor::zeros({5}, DType::f32, g), 1e-5).y.numel(), 0);
  EXPECT_EQ(embedding(Tensor::ones({4, 3}, DType::f32, g), Tensor::empty({0}, DType::i64, g)).numel(), 0);
  EXPECT_EQ(embedding(Tensor::empty({4, 0}, DType::f32, g), Tensor::zeros({3}, DType::i64, g)).numel(), 0);
  EXPECT_EQ(embedding_backward(Tensor::empty({0, 3}, DType::f32, g), Tensor::empty({0}, DType::i64, g), 4)
                .to(Device::cpu).to_vector<double>(), std::vector<double>(12, 0.0));
  EXPECT_EQ(cross_entropy(Tensor::empty({0, 5}, DType::f32, g), Tensor::empty({0}, DType::i64, g)).loss.item(), 0.0);
  EXPECT_EQ(topk(test::random_tensor({3, 4}, 13, -1, 1, DType::f32, g), 0).values.numel(), 0);
  Tensor h = Tensor::zeros({0, 0}, DType::f32, g);
  syrk_(h, Tensor::empty({3, 0}, DType::f32, g), 1.0, 0.0);
  symmetrize_(h);
  EXPECT_EQ(cholesky(h).numel(), 0);
  EXPECT_NO_THROW(cuda::synchronize());
}

TEST(CudaAllocator, SteadyStateReusesCachedBlocks) {
  PT_SKIP_IF_NO_CUDA();
  { Tensor warm = Tensor::empty({1 << 20}, DType::f32, Device::cuda); }
  auto before = cuda::allocator_stats();
  for (int i = 0; i < 50; ++i) {
    Tensor a = Tensor::empty({1 << 20}, DType::f32, Device::cuda);
    Tensor b = Tensor::empty({1000}, DType::f32, Device::cuda);
    Tensor c = Tensor::empty({1000}, DType::f32, Device::cuda);
  }
  auto after = cuda::allocator_stats();
  EXPECT_LE(after.num_cuda_mallocs - before.num_cuda_mallocs, 2u);  // the two small blocks at most
  EXPECT_GE(after.num_cache_hits - before.num_cache_hits, 100u);
  EXPECT_EQ(after.allocated_bytes, before.allocated_bytes);
}
#endif

}  // namespace
}  // namespace pt
