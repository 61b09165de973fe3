#include "tests/test_util.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include <cstring>
#include <sstream>

extern char** environ;

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


std::vector<int32_t> learnable_token_stream(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> next(static_cast<size_t>(vocab)), out(static_cast<size_t>(n));
  for (int64_t i = 0; i < vocab; ++i) next[size_t(i)] = int32_t(random_bits(1234, uint64_t(i)) % uint64_t(vocab));
  int32_t cur = 3 % int32_t(vocab);
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t r = random_bits(seed, uint64_t(i));
    cur = (r % 10) != 0 ? next[size_t(cur)] : int32_t((r >> 8) % uint64_t(vocab));
    out[size_t(i)] = cur;
  }
  return out;
}

int spawn_process(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  EXPECT_EQ(rc, 0) << "cannot start " << args[0];
  return int(pid);
}

int wait_exit(int pid) {
  int status = 0;
  waitpid(pid_t(pid), &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace pt::test
