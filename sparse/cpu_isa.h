// Which CPU kernels the packed formats run: the portable ones (sparse/cpu_sparse_rows.h, BLAS), which any x86-64
// build runs, or the AVX-512 ones (sparse/cpu_avx512.h) for the products that are few tokens wide, where the
// portable loops (or OpenBLAS's skinny sgemm) leave most of the CPU idle. The choice is made at run time from
// the CPU (the build has no -march), so one binary is right on every machine; tests and benchmarks can force the
// portable kernels to compare both on the same machine.
#pragma once

namespace pt::sparse::cpu {

enum class Isa { portable, avx512 };

// True when this CPU (and compiler) can run the AVX-512 kernels: AVX-512F with BMI2 and POPCNT.
bool avx512_supported();

// The kernels in use: avx512 when supported, unless a ScopedIsa forces portable.
Isa active_isa();

// Forces `isa` for its lifetime (process-wide; for tests and benchmarks, not for concurrent use). Forcing avx512
// on a CPU without it throws.
class ScopedIsa {
 public:
  explicit ScopedIsa(Isa isa);
  ~ScopedIsa();
  ScopedIsa(const ScopedIsa&) = delete;
  ScopedIsa& operator=(const ScopedIsa&) = delete;

 private:
  int previous_;
};

const char* isa_name(Isa isa);  // "portable" | "avx512"

}  // namespace pt::sparse::cpu
