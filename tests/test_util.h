// Shared test helpers: tolerant tensor comparison against a reference, CUDA skipping, fresh inputs.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "tensor/ops.h"
#include "tensor/tensor.h"
#include "tests/test_paths.h"

namespace pt::test {

// Skip (reported as skipped by ctest, never passed) when no CUDA device is usable.
#define PT_SKIP_IF_NO_CUDA()                                                  \
  do {                                                                        \
    if (!::pt::cuda_is_available()) GTEST_SKIP() << "no CUDA device";         \
  } while (0)

struct Tolerance {
  double rtol;
  double atol;
};
inline constexpr Tolerance kElementwiseF32{1e-5, 1e-6};
inline constexpr Tolerance kReductionF32{1e-4, 1e-5};
inline constexpr Tolerance kHalf{1e-2, 1e-2};
inline constexpr Tolerance kF64{1e-10, 1e-12};

// Every element satisfies |a - e| <= atol + rtol*|e|, shapes equal, no NaN unless e is NaN.
// Returns a gtest assertion result describing the worst element on failure.
::testing::AssertionResult tensors_close(const Tensor& actual, const Tensor& expected, Tolerance tol);
#define PT_EXPECT_CLOSE(actual, expected, tol) EXPECT_TRUE(::pt::test::tensors_close((actual), (expected), (tol)))

// Exact equality (bitwise for floats after converting to f64; NaN == NaN).
::testing::AssertionResult tensors_equal(const Tensor& actual, const Tensor& expected);

// Fresh random input in [lo, hi) that is never all-zero (a fixed seed per test keeps runs reproducible).
Tensor random_tensor(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0,
                     DType dtype = DType::f32, Device device = Device::cpu);

// f() must throw pt::Error whose message contains `needle` (so errors name the op and its arguments).
template <class F> void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected a pt::Error containing \"" << needle << "\", but nothing was thrown";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  }
}

// Central finite differences of a scalar objective at x (f64, any shape): d objective / d x, same shape as x.
Tensor numeric_gradient(const std::function<double(const Tensor&)>& objective, const Tensor& x, double h = 1e-6);

// Dtype, shape and bytes all equal (a bit-exact round trip; NaN payloads included).
::testing::AssertionResult same_bytes(const Tensor& a, const Tensor& b);

// A fresh scratch folder per test (named after the process and the test), removed afterwards.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::filesystem::path dir_;
};

// Turns allocation poisoning on for the scope (outputs that are never written stay NaN).
class PoisonScope {
 public:
  PoisonScope() : prev_(poison_allocations()) { set_poison_allocations(true); }
  ~PoisonScope() { set_poison_allocations(prev_); }
 private:
  bool prev_;
};


// A learnable token stream over [0, vocab): a fixed random successor for each token, followed 90 % of the
// time (otherwise a random token), so a small model's perplexity can fall far below the vocabulary size.
std::vector<int32_t> learnable_token_stream(int64_t n, int64_t vocab, uint64_t seed);

// Running the apps as separate processes (so a test can kill them mid-run): stdout and stderr appended to
// `log`; wait_exit gives the exit code, or 128 + the signal that ended the process.
int spawn_process(const std::vector<std::string>& args, const std::string& log);
int wait_exit(int pid);
std::string read_text_file(const std::string& path);  // "" when missing

}  // namespace pt::test
