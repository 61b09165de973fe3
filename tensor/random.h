// Counter-based random numbers: value i of a draw depends only on (seed, offset + i), so the CPU and
// the CUDA kernels produce the same bits, draws can be split across threads, and the whole generator
// state is two integers (easy to checkpoint and resume).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define PT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define PT_HOST_DEVICE inline
#endif

namespace pt {

struct Generator {
  uint64_t seed = 0;
  uint64_t offset = 0;  // number of values consumed so far
  explicit Generator(uint64_t s = 0) : seed(s) {}
  uint64_t advance(uint64_t n) { uint64_t o = offset; offset += n; return o; }
};

// splitmix64 finaliser over (seed, counter): a well-mixed 64-bit value per counter.
PT_HOST_DEVICE uint64_t random_bits(uint64_t seed, uint64_t counter) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + counter * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// Uniform in [0, 1) with 53 random bits.
PT_HOST_DEVICE double random_uniform01(uint64_t seed, uint64_t counter) {
  return double(random_bits(seed, counter) >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace pt
