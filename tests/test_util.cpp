#include "tests/test_util.h"

#include <unistd.h>

#include <cstring>
#include <sstream>

namespace pt::test {

::testing::AssertionResult tensors_close(const Tensor& actual, const Tensor& expected, Tolerance tol) {
  if (actual.shape() != expected.shape())
    return ::testing::AssertionFailure() << "shape " << shape_str(actual.shape()) << " != expected "
                                         << shape_str(expected.shape());
  auto a = actual.to_vector<double>();
  auto e = expected.to_vector<double>();
  size_t bad = 0, worst = 0;
  double worst_excess = -1;
  for (size_t i = 0; i < a.size(); ++i) {
    bool ok;
    double excess;
    if (std::isnan(e[i])) {
      ok = std::isnan(a[i]);
      excess = ok ? 0 : 1e300;
    } else if (std::isinf(e[i])) {
      ok = a[i] == e[i];
      excess = ok ? 0 : 1e300;
    } else {
      double lim = tol.atol + tol.rtol * std::abs(e[i]);
      double d = std::abs(a[i] - e[i]);
      ok = d <= lim;  // false for NaN actual
      excess = std::isnan(d) ? 1e300 : d / lim;
    }
    if (!ok) {
      ++bad;
      if (excess > worst_excess) { worst_excess = excess; worst = i; }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << a.size() << " elements differ (rtol "
                                       << tol.rtol << ", atol " << tol.atol << "); worst at flat index "
                                       << worst << ": got " << a[worst] << ", expected " << e[worst];
}

::testing::AssertionResult tensors_equal(const Tensor& actual, const Tensor& expected) {
  return tensors_close(actual, expected, Tolerance{0.0, 0.0});
}

Tensor random_tensor(const Shape& shape, uint64_t seed, double lo, double hi, DType dtype, Device device) {
  Generator g(seed);
  Tensor t = Tensor::uniform(shape, lo, hi, g, DType::f64, Device::cpu);
  if (t.numel() > 0 && t.to_vector<double>()[0] == 0.0) t.fill_(0.5 * (lo + hi) + 0.25 * (hi - lo));
  return t.to(dtype).to(device);
}

Tensor numeric_gradient(const std::function<double(const Tensor&)>& objective, const Tensor& x, double h) {
  const std::vector<double> xv = x.to_vector<double>();
  std::vector<double> grad(xv.size());
  for (size_t i = 0; i < xv.size(); ++i) {
    std::vector<double> xp = xv, xm = xv;
    xp[i] += h;
    xm[i] -= h;
    grad[i] = (objective(Tensor::from_vector(xp, x.shape())) - objective(Tensor::from_vector(xm, x.shape()))) / (2 * h);
  }
  return Tensor::from_vector(grad, x.shape());
}

::testing::AssertionResult same_bytes(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape())
    return ::testing::AssertionFailure() << a.describe() << " vs " << b.describe();
  Tensor ca = a.to(Device::cpu).contiguous(), cb = b.to(Device::cpu).contiguous();
  if (ca.nbytes() && std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) != 0)
    return ::testing::AssertionFailure() << "bytes differ for " << a.describe();
  return ::testing::AssertionSuccess();
}

void TempDirTest::SetUp() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  dir_ = std::filesystem::temp_directory_path() /
         ("pt_test_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir_);
  std::filesystem::create_directories(dir_);
}

void TempDirTest::TearDown() { std::filesystem::remove_all(dir_); }

}  // namespace pt::test
