// The one-rank communicator every single-process run uses, the launch read from the launcher's environment, and
// the argument checks every backend shares. (The MPI and NCCL backends run under mpirun: tests/dist/.)
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "dist/world.h"
#include "tests/test_util.h"

namespace pt::dist {
namespace {

TEST(OneProcess, CollectivesOverOneRankLeaveOrCopyTheTensor) {
  Communicator& c = one_process();
  EXPECT_EQ(c.rank(), 0);
  EXPECT_EQ(c.size(), 1);
  const Tensor x = test::random_tensor({5, 7}, 31);
  Tensor t = x.clone();
  c.all_reduce_sum(t);
  EXPECT_TRUE(test::same_bytes(t, x));
  c.all_reduce_sum_async(t)->wait();
  c.broadcast(t, 0);
  EXPECT_TRUE(test::same_bytes(t, x));
  Tensor gathered = Tensor::zeros({1, 5, 7});
  c.all_gather(x, gathered);
  EXPECT_TRUE(test::same_bytes(gathered.reshape({5, 7}), x));
  Tensor scattered = Tensor::zeros({35});
  c.reduce_scatter_sum(x, scattered);
  EXPECT_TRUE(test::same_bytes(scattered.reshape({5, 7}), x));
  EXPECT_EQ(c.all_reduce_sum(2.5), 2.5);
  EXPECT_EQ(c.all_gather(4.0), std::vector<double>{4.0});
  c.barrier();
}

TEST(OneProcess, ShareOfOneRankIsEverything) {
  EXPECT_EQ(one_process().share(0).size(), 0);
  EXPECT_EQ(one_process().share(141).begin, 0);
  EXPECT_EQ(one_process().share(141).end, 141);
}

TEST(OneProcess, ChecksArgumentsLikeEveryBackend) {
  Communicator& c = one_process();
  test::expect_error([&] { c.all_reduce_sum(Tensor()); }, "undefined");
  test::expect_error([&] { c.all_reduce_sum(Tensor::ones({3, 4}).transpose(0, 1)); }, "not contiguous");
  test::expect_error([&] { c.all_reduce_sum(Tensor::ones({4}, DType::u8)); }, "cannot sum");
  test::expect_error([&] { c.broadcast(Tensor::ones({4}), 1); }, "root 1 is not a rank");
  test::expect_error([&] { c.all_gather(Tensor::ones({4}), Tensor::ones({5})); }, "must hold 1 x 4");
  test::expect_error([&] { c.reduce_scatter_sum(Tensor::ones({4}), Tensor::ones({3})); }, "must hold 1 x 3");
  test::expect_error([&] { c.share(-1); }, "-1 items");
}

// Sets environment variables for one scope and restores them.
class ScopedEnv {
 public:
  ScopedEnv(std::initializer_list<std::pair<const char*, const char*>> vars) {
    for (auto [k, v] : vars) {
      const char* old = std::getenv(k);
      saved_.push_back({k, old ? std::optional<std::string>(old) : std::nullopt});
      v ? setenv(k, v, 1) : unsetenv(k);
    }
  }
  ~ScopedEnv() {
    for (auto& [k, v] : saved_) v ? setenv(k.c_str(), v->c_str(), 1) : unsetenv(k.c_str());
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST(Launch, ReadsOpenMpisEnvironmentAndIsOneProcessWithout) {
  {
    ScopedEnv env({{"OMPI_COMM_WORLD_SIZE", nullptr}, {"PMI_SIZE", nullptr}});
    const Launch l = detect_launch();
    EXPECT_EQ(l.size, 1);
    EXPECT_EQ(l.launcher, "");
    EXPECT_EQ(connect(l, Device::cpu)->size(), 1);  // a single process never starts MPI
  }
  {
    ScopedEnv env({{"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_RANK", "3"},
                   {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}});
    const Launch l = detect_launch();
    EXPECT_EQ(l.launcher, "OpenMPI");
    EXPECT_EQ(l.size, 4);
    EXPECT_EQ(l.rank, 3);
    EXPECT_EQ(l.local_rank, 1);
    EXPECT_EQ(l.local_size, 2);
  }
  {
    ScopedEnv env({{"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_RANK", "2"}});
    test::expect_error([] { detect_launch(); }, "rank 2 of 2");
  }
  {
    ScopedEnv env({{"OMPI_COMM_WORLD_SIZE", "two"}});
    test::expect_error([] { detect_launch(); }, "OMPI_COMM_WORLD_SIZE = 'two'");
  }
}

TEST(Launch, TimeoutComesFromTheEnvironmentAndRefusesNonsense) {
  {
    ScopedEnv env({{"PT_DIST_TIMEOUT", "2.5"}});
    EXPECT_EQ(default_timeout().count(), 2500);
  }
  {
    ScopedEnv env({{"PT_DIST_TIMEOUT", "-3"}});
    test::expect_error([] { default_timeout(); }, "PT_DIST_TIMEOUT = '-3'");
  }
  {
    ScopedEnv env({{"PT_DIST_TIMEOUT", nullptr}});
    EXPECT_EQ(default_timeout().count(), 30 * 60 * 1000);
  }
}

}  // namespace
}  // namespace pt::dist
