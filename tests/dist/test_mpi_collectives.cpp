// The MPI backend's collectives on 2+ ranks against results computed here: every rank rebuilds every other rank's
// input (tests/dist/world_fixture.h) and sums / gathers / slices them in double loops. Sizes include odd ones
// and ones that MPI moves in several pieces (set_max_count lowered), for every dtype a collective takes.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/dist/world_fixture.h"
#include "tests/test_util.h"

namespace pt::dist::test {
namespace {

// Lowers the piece size of every MPI call for one scope, so small tensors take the piecewise paths.
class SmallPieces {
 public:
  explicit SmallPieces(int64_t n) { world().set_max_count(n); }
  ~SmallPieces() { world().set_max_count(INT32_MAX / 2); }
};

void expect_values(const Tensor& t, const std::vector<double>& expected, double tol) {
  const auto got = t.to_vector<double>();
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_LE(std::abs(got[i] - expected[i]), tol * (1 + std::abs(expected[i]))) << "element " << i;
}

TEST(MpiCollectives, RunsOnSeveralRanks) {
  ASSERT_GE(world().size(), 2) << "pt_dist_tests must run under mpirun -np 2 or more";
  EXPECT_STREQ(world().backend(), "MPI");
}

TEST(MpiCollectives, AllReduceSumIsTheSumOfEveryRanksTensor) {
  uint64_t seed = 1;
  for (DType dtype : {DType::f32, DType::f64, DType::i32, DType::i64})
    for (int64_t pieces : {int64_t(0), int64_t(7)})
      for (const Shape& shape : {Shape{1}, Shape{3, 37}, Shape{1000}}) {
        SCOPED_TRACE(std::string(dtype_name(dtype)) + " pieces " + std::to_string(pieces));
        SmallPieces small(pieces ? pieces : INT32_MAX / 2);
        Tensor t = rank_input(shape, dtype, ++seed, world().rank());
        world().all_reduce_sum(t);
        expect_values(t, expected_sum(shape, dtype, seed), dtype == DType::f32 ? 1e-6 : 0.0);
        EXPECT_TRUE(same_on_every_rank(t));
      }
}

TEST(MpiCollectives, AsyncAllReduceCompletesOnWait) {
  std::vector<Tensor> ts;
  std::vector<std::unique_ptr<PendingCollective>> pending;
  for (int k = 0; k < 3; ++k) {  // several in flight at once, as gradient buckets are
    ts.push_back(rank_input({129}, DType::f32, 100 + uint64_t(k), world().rank()));
    pending.push_back(world().all_reduce_sum_async(ts.back()));
  }
  for (int k = 0; k < 3; ++k) {
    pending[size_t(k)]->wait();
    expect_values(ts[size_t(k)], expected_sum({129}, DType::f32, 100 + uint64_t(k)), 1e-6);
  }
}

TEST(MpiCollectives, BroadcastGivesEveryRankTheRootsTensor) {
  for (int root = 0; root < world().size(); ++root)
    for (int64_t pieces : {int64_t(INT32_MAX / 2), int64_t(5)}) {
      SmallPieces small(pieces);
      for (DType dtype : {DType::f32, DType::u8, DType::bf16}) {
        Tensor t = rank_input({2, 21}, DType::f32, 7, world().rank()).to(dtype);
        world().broadcast(t, root);
        EXPECT_TRUE(pt::test::same_bytes(t, rank_input({2, 21}, DType::f32, 7, root).to(dtype)))
            << "root " << root << " " << dtype_name(dtype);
      }
    }
}

TEST(MpiCollectives, AllGatherConcatenatesTheRanksInRankOrder) {
  for (int64_t pieces : {int64_t(INT32_MAX / 2), int64_t(4)}) {
    SmallPieces small(pieces);
    const int64_t n = 23;
    Tensor in = rank_input({n}, DType::f64, 11, world().rank());
    Tensor out = Tensor::zeros({world().size(), n}, DType::f64);
    world().all_gather(in, out);
    for (int r = 0; r < world().size(); ++r)
      EXPECT_TRUE(pt::test::same_bytes(out.narrow(0, r, 1).reshape({n}), rank_input({n}, DType::f64, 11, r)))
          << "pieces " << pieces << ", block of rank " << r;
    const auto values = world().all_gather(double(world().rank() * 10 + 1));
    for (int r = 0; r < world().size(); ++r) EXPECT_EQ(values[size_t(r)], r * 10 + 1);
  }
}

TEST(MpiCollectives, ReduceScatterGivesEachRankItsBlockOfTheSum) {
  for (int64_t pieces : {int64_t(INT32_MAX / 2), int64_t(6)}) {
    SmallPieces small(pieces);
    const int64_t n = 31;
    const Shape whole{world().size(), n};
    Tensor in = rank_input(whole, DType::f32, 13, world().rank());
    Tensor out = Tensor::zeros({n}, DType::f32);
    world().reduce_scatter_sum(in, out);
    const auto sum = expected_sum(whole, DType::f32, 13);
    expect_values(out, std::vector<double>(sum.begin() + world().rank() * n, sum.begin() + (world().rank() + 1) * n),
                  1e-6);
  }
}

TEST(MpiCollectives, ShareSplitsItemsIntoContiguousNearlyEqualRanges) {
  for (int64_t n : {0, 1, 2, 7, 140}) {
    const auto begins = world().all_gather(double(world().share(n).begin));
    const auto ends = world().all_gather(double(world().share(n).end));
    EXPECT_EQ(begins[0], 0);
    EXPECT_EQ(ends.back(), n);
    for (int r = 0; r < world().size(); ++r) {
      if (r > 0) EXPECT_EQ(begins[size_t(r)], ends[size_t(r - 1)]);
      const double size = ends[size_t(r)] - begins[size_t(r)];
      EXPECT_GE(size, std::floor(double(n) / world().size()));
      EXPECT_LE(size, std::ceil(double(n) / world().size()));
    }
  }
}

TEST(MpiCollectives, RefusesTensorsItCannotMove) {
  pt::test::expect_error([] { world().all_reduce_sum(Tensor::ones({4}, DType::u8)); }, "cannot sum");
  pt::test::expect_error([] { world().all_reduce_sum(Tensor::ones({4, 4}).transpose(0, 1)); }, "not contiguous");
  pt::test::expect_error([] { world().broadcast(Tensor::ones({4}), world().size()); }, "is not a rank");
  pt::test::expect_error([] { world().all_gather(Tensor::ones({4}), Tensor::ones({4})); }, "must hold");
  world().barrier();  // the ranks still agree after refusals (nothing was started)
}

}  // namespace
}  // namespace pt::dist::test
