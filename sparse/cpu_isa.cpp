#include "sparse/cpu_isa.h"

#include <atomic>

#include "base/error.h"

namespace pt::sparse::cpu {

namespace {

std::atomic<int> forced{-1};  // -1: whatever the CPU supports

}  // namespace

bool avx512_supported() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("bmi2") &&
                          __builtin_cpu_supports("popcnt");
  return yes;
#else
  return false;
#endif
}

Isa active_isa() {
  const int f = forced.load(std::memory_order_relaxed);
  if (f >= 0) return Isa(f);
  return avx512_supported() ? Isa::avx512 : Isa::portable;
}

ScopedIsa::ScopedIsa(Isa isa) : previous_(forced.load()) {
  PT_CHECK(isa != Isa::avx512 || avx512_supported(), "sparse::cpu::ScopedIsa: this CPU cannot run the avx512 kernels");
  forced.store(int(isa));
}

ScopedIsa::~ScopedIsa() { forced.store(previous_); }

const char* isa_name(Isa isa) { return isa == Isa::avx512 ? "avx512" : "portable"; }

}  // namespace pt::sparse::cpu
