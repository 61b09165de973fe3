// The CPU caching allocator (tensor/cpu_caching_allocator): steady-state loops reuse cached blocks instead of
// asking the system, blocks are aligned and never shared by two live tensors, the cap bounds what the pool
// holds, and reused memory is never mistaken for zeroed memory.
#include <gtest/gtest.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
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

TEST(CpuAllocator, AMissReleasesCachedBlocksBeforeRaisingThePeak) {
  CacheLimitGuard guard;
  cpu::set_cache_limit(size_t(256) << 20);
  cpu::empty_cache();
  cpu::reset_peak_stats();
  const size_t base = cpu::allocator_stats().reserved_bytes;
  cpu::deallocate(cpu::allocate(8 << 20));  // cached: the pool holds 8 MiB more than its tensors
  const auto before = cpu::allocator_stats();
  EXPECT_EQ(before.cached_bytes, size_t(8) << 20);
  void* other = cpu::allocate(12 << 20);  // misses; kept beside the cached block, the pool would peak at 20 MiB
  const auto after = cpu::allocator_stats();
  EXPECT_EQ(after.cached_bytes, 0u);
  EXPECT_EQ(after.num_releases - before.num_releases, 1u);
  EXPECT_EQ(after.peak_reserved_bytes - base, size_t(12) << 20);
  // Under the peak the cache keeps what it holds: with 12 MiB live, the pool emptied and a 4 MiB block cached,
  // an 8 MiB miss stays under the 12 MiB peak and releases nothing.
  cpu::deallocate(other);
  cpu::empty_cache();
  cpu::deallocate(cpu::allocate(4 << 20));
  void* large = cpu::allocate(8 << 20);
  EXPECT_EQ(cpu::allocator_stats().cached_bytes, size_t(4) << 20);
  cpu::deallocate(large);
}

// VmRSS of this process in bytes.
int64_t resident_bytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return -1;
}

TEST(CpuAllocator, AReleasedLargeBlockLeavesTheResidentSet) {
  CacheLimitGuard guard;
  cpu::set_cache_limit(0);  // every free goes straight back
#if defined(__GLIBC__)
  // What glibc does by itself once a mapped block of ~32 MiB has been freed (its adaptive mmap threshold rises),
  // set here so the test does not depend on what ran before: blocks up to 32 MiB come from the C heap, and a freed
  // one stays resident there until malloc_trim. The pool maps its large blocks itself, so it must not.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  const size_t n = 16 << 20;
  auto* p = static_cast<uint8_t*>(cpu::allocate(n));
  void* above = cpu::allocate(4 << 20);  // a neighbour, so the block is not the top of the heap
  for (size_t i = 0; i < n; i += 4096) p[i] = uint8_t(i / 4096 + 1);  // fault every page in
  const int64_t touched = resident_bytes();
  cpu::deallocate(p);
  const int64_t released = resident_bytes();
  ASSERT_GT(touched, 0);
  cpu::deallocate(above);
  EXPECT_GE(touched - released, int64_t(n) * 7 / 8) << "VmRSS " << touched << " -> " << released;
}

}  // namespace
}  // namespace pt
