// The CPU caching allocator (tensor/cpu_caching_allocator): steady-state loops reuse cached blocks instead of
// asking the system, blocks are aligned and never shared by two live tensors, the cap bounds what the pool
// holds, and reused memory is never mistaken for zeroed memory.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "tensor/cpu_caching_allocator.h"
#include "tensor/ops.h"
#include "tests/test_util.h"

namespace pt {
namespace {

// Restores the cap a test changed.
struct CacheLimitGuard {
  size_t saved = cpu::allocator_stats().cache_limit_bytes;
  ~CacheLimitGuard() { cpu::set_cache_limit(saved); }
};

TEST(CpuAllocator, SteadyStateReusesCachedBlocks) {
  CacheLimitGuard guard;
  cpu::set_cache_limit(size_t(256) << 20);
  { Tensor warm = Tensor::empty({1 << 22}, DType::f32, Device::cpu), small = Tensor::empty({1000}, DType::f32, Device::cpu); }
  const auto before = cpu::allocator_stats();
  for (int i = 0; i < 50; ++i) {
    Tensor a = Tensor::empty({1 << 22}, DType::f32, Device::cpu);  // 16 MiB: a fresh mapping without the cache
    Tensor b = Tensor::empty({1000}, DType::f32, Device::cpu);
  }
  const auto after = cpu::allocator_stats();
  EXPECT_EQ(after.num_system_allocs, before.num_system_allocs);
  EXPECT_GE(after.num_cache_hits - before.num_cache_hits, 100u);
  EXPECT_EQ(after.allocated_bytes, before.allocated_bytes);
}

TEST(CpuAllocator, LiveBlocksAreAlignedAndDisjoint) {
  std::vector<Tensor> live;
  for (int64_t n : {1, 15, 16, 1000, 4096, 300000, 1 << 20, 3 << 20}) {
    live.push_back(Tensor::empty({n}, DType::u8, Device::cpu));
    live.push_back(Tensor::empty({n}, DType::u8, Device::cpu));
  }
  for (size_t i = 0; i < live.size(); ++i) {
    const auto a = reinterpret_cast<uintptr_t>(live[i].data<uint8_t>());
    EXPECT_EQ(a % 64, 0u) << "block " << i;
    if (live[i].numel() >= (1 << 20)) {
      EXPECT_EQ(a % (2 << 20), 0u) << "large block " << i;
    }
    for (size_t j = 0; j < i; ++j) {
      const auto b = reinterpret_cast<uintptr_t>(live[j].data<uint8_t>());
      EXPECT_TRUE(a + uintptr_t(live[i].numel()) <= b || b + uintptr_t(live[j].numel()) <= a)
          << "blocks " << i << " and " << j << " overlap";
    }
  }
}

TEST(CpuAllocator, SmallRequestsDoNotTakeLargeCachedBlocks) {
  CacheLimitGuard guard;
  cpu::set_cache_limit(size_t(64) << 20);
  void* big = cpu::allocate(8 << 20);
  cpu::deallocate(big);  // cached
  void* small = cpu::allocate(4096);
  EXPECT_NE(small, big);
  void* again = cpu::allocate(8 << 20);
  EXPECT_EQ(again, big);  // the exact size comes back from the pool
  cpu::deallocate(small);
  cpu::deallocate(again);
}

TEST(CpuAllocator, CapBoundsTheCachedBytes) {
  CacheLimitGuard guard;
  cpu::empty_cache();
  cpu::set_cache_limit(size_t(5) << 20);
  std::vector<void*> blocks;
  for (int i = 0; i < 4; ++i) blocks.push_back(cpu::allocate(2 << 20));
  const auto before = cpu::allocator_stats();
  for (void* b : blocks) cpu::deallocate(b);
  const auto after = cpu::allocator_stats();
  EXPECT_LE(after.cached_bytes, size_t(5) << 20);
  EXPECT_EQ(after.cached_bytes, size_t(4) << 20);  // two 2 MiB blocks fit under 5 MiB, the other two went back
  EXPECT_EQ(after.num_releases - before.num_releases, 2u);
  cpu::set_cache_limit(0);  // off: everything cached goes back, and frees go straight to the system
  EXPECT_EQ(cpu::allocator_stats().cached_bytes, 0u);
  cpu::deallocate(cpu::allocate(1 << 20));
  EXPECT_EQ(cpu::allocator_stats().cached_bytes, 0u);
}

TEST(CpuAllocator, ReusedBlocksAreNotAssumedZero) {
  CacheLimitGuard guard;
  cpu::set_cache_limit(size_t(64) << 20);
  const int64_t n = 3 << 18;  // 3 MiB of f32
  const float* first = nullptr;
  {
    Tensor dirty = test::random_tensor({n}, 7);
    first = dirty.data<float>();
  }
  Tensor z = Tensor::zeros({n}, DType::f32, Device::cpu);
  EXPECT_EQ(z.data<float>(), first);  // the same block came back...
  for (float v : z.to_vector<float>()) ASSERT_EQ(v, 0.0f);  // ...and zeros() really wrote it
}

TEST(CpuAllocator, EmptyCacheReleasesEverythingCached) {
  { Tensor t = Tensor::empty({1 << 20}, DType::f32, Device::cpu); }
  cpu::empty_cache();
  const auto s = cpu::allocator_stats();
  EXPECT_EQ(s.cached_bytes, 0u);
  EXPECT_EQ(s.reserved_bytes, s.allocated_bytes);
}

}  // namespace
}  // namespace pt
