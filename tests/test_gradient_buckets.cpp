// Gradient buckets in one process: which parameters share a bucket, and the hook-driven sums against a plain
// backward. A stand-in communicator of two identical ranks (each sum doubles the tensor) records every
// collective, so the order of the buckets and their start during the backward are visible.
#include <gtest/gtest.h>

#include <vector>

#include "autograd/functions.h"
#include "tensor/ops.h"
#include "tests/test_util.h"
#include "train/gradient_buckets.h"

namespace pt::train {
namespace {

using autograd::Variable;
using Buckets = std::vector<std::vector<size_t>>;

TEST(GradientBuckets, ParametersFillBucketsFromTheLastOneUpToTheCap) {
  const std::vector<int> one_kind(6, 0);
  // From the end: 40+40 fit; 2000 (over the cap) stands alone; 50+300 fit; 100 would pass the cap.
  EXPECT_EQ(assign_buckets({100, 300, 50, 2000, 40, 40}, one_kind, 400), (Buckets{{5, 4}, {3}, {2, 1}, {0}}));
  EXPECT_EQ(assign_buckets({100, 300, 50, 2000, 40, 40}, one_kind, 1 << 20), (Buckets{{5, 4, 3, 2, 1, 0}}));
  EXPECT_EQ(assign_buckets({8, 8, 8}, {0, 1, 1}, 1000), (Buckets{{2, 1}, {0}}));  // one dtype and device each
  EXPECT_EQ(assign_buckets({}, {}, 10), Buckets{});
  test::expect_error([] { assign_buckets({8}, {0}, 0); }, "must be > 0");
}

// Two ranks with the same gradients: every sum is the tensor doubled.
class TwoIdenticalRanks final : public dist::Communicator {
 public:
  TwoIdenticalRanks() : Communicator(0, 2) {}
  const char* backend() const override { return "two identical ranks"; }
  Device device() const override { return Device::cpu; }
  [[noreturn]] void abort(int) override { std::abort(); }
  std::vector<int64_t> sums;  // numel of each all_reduce_sum_async, in order

 protected:
  void do_all_reduce_sum(const Tensor& t) override { pt::binary_(t, t, t.clone(), BinaryOp::add); }
  std::unique_ptr<dist::PendingCollective> do_all_reduce_sum_async(const Tensor& t) override {
    sums.push_back(t.numel());
    do_all_reduce_sum(t);
    return dist::one_process().all_reduce_sum_async(t);  // already complete
  }
  void do_broadcast(const Tensor&, int) override {}
  void do_all_gather(const Tensor&, const Tensor&) override {}
  void do_reduce_scatter_sum(const Tensor&, const Tensor&) override {}
  void do_barrier(bool) override {}
};

// Registered in order: unused (never in the graph), w1 [5, 4], w2 [4, 3], bias [3]. The loss uses w1, then
// w2, then bias, so the backward finishes bias first and w1 last.
struct Net {
  std::vector<Variable> p;
  Tensor x = test::random_tensor({6, 5}, 70);
  explicit Net(uint64_t seed) {
    for (Shape s : {Shape{7}, Shape{5, 4}, Shape{4, 3}, Shape{3}})
      p.emplace_back(test::random_tensor(s, seed++), true);
  }
  Variable loss(double scale) const {
    Variable h = autograd::relu(autograd::matmul(Variable(x), p[1]));
    Variable y = autograd::add(autograd::matmul(h, p[2]), p[3]);
    return autograd::mul_scalar(autograd::sum_all(autograd::square(y)), scale);
  }
  std::vector<Variable*> params() { return {&p[0], &p[1], &p[2], &p[3]}; }
};

TEST(GradientBuckets, EachBucketIsSummedOnceInBucketOrderAndStartsDuringTheBackward) {
  Net reference(1), bucketed(1);
  reference.loss(0.5).backward();
  TwoIdenticalRanks comm;
  GradientBuckets buckets(comm, bucketed.params(), 60);  // bias 12 + w2 48 bytes fill one; w1 (80) is over the cap
  EXPECT_EQ(buckets.buckets(), (Buckets{{3, 2}, {1}, {0}}));
  buckets.arm();
  bucketed.loss(0.5).backward();
  // {bias, w2} and {w1} started from the hooks; {unused} got no gradient and started in finish().
  EXPECT_EQ(buckets.started_during_backward(), 2);
  buckets.finish();
  EXPECT_EQ(comm.sums, (std::vector<int64_t>{3 + 12, 20, 7}));
  EXPECT_FALSE(bucketed.p[0].grad().defined());  // no gradient stays no gradient
  for (size_t k = 1; k < 4; ++k)
    EXPECT_TRUE(test::tensors_equal(bucketed.p[k].grad(), pt::mul_scalar(reference.p[k].grad(), 2.0))) << "param " << k;
}

TEST(GradientBuckets, OnlyTheArmedBackwardStartsSumsAndAccumulatedGradientsAreSummedWhole) {
  Net reference(3), bucketed(3);
  reference.loss(0.25).backward();
  reference.loss(0.75).backward();
  TwoIdenticalRanks comm;
  GradientBuckets buckets(comm, bucketed.params(), 1 << 20);  // one bucket
  bucketed.loss(0.25).backward();  // not armed: a micro-batch whose gradients are not final
  EXPECT_TRUE(comm.sums.empty());
  buckets.arm();
  bucketed.loss(0.75).backward();
  buckets.finish();
  EXPECT_EQ(comm.sums, (std::vector<int64_t>{7 + 20 + 12 + 3}));
  for (size_t k = 1; k < 4; ++k)
    EXPECT_TRUE(test::tensors_equal(bucketed.p[k].grad(), pt::mul_scalar(reference.p[k].grad(), 2.0))) << "param " << k;
  test::expect_error([&] { buckets.finish(); }, "without arm()");
}

TEST(GradientBuckets, TheHooksAreRemovedWithTheBuckets) {
  Net net(5);
  TwoIdenticalRanks comm;
  {
    GradientBuckets buckets(comm, net.params(), 1 << 20);
    buckets.arm();
  }
  net.loss(1.0).backward();  // a hook left behind would call into the destroyed buckets
  EXPECT_TRUE(comm.sums.empty());
  test::expect_error([&] { autograd::add(net.p[1], net.p[1]).set_grad_ready_hook([] {}); }, "only leaves");
}

}  // namespace
}  // namespace pt::train
