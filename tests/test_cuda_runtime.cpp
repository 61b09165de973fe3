// CUDA runtime pieces: the caching allocator reuses blocks (no cudaMalloc in steady state), and a
// binary built with CUDA still runs on the CPU when no device is present.
#include <gtest/gtest.h>

#include "tensor/ops.h"
#include "tests/test_util.h"
#if PT_CUDA
#include "tensor/cuda/caching_allocator.h"
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

#if PT_CUDA
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
