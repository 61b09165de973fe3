// The NCCL backend's collectives on CUDA tensors of one GPU per rank, against sums computed on the CPU here.
// Needs as many GPUs on this machine as ranks (2 at least): skipped otherwise, on every rank alike.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include "autograd/functions.h"
#include "dist/nccl_communicator.h"
#include "dist/world.h"
#include "tests/dist/world_fixture.h"
#include "tests/test_util.h"
#include "train/gradient_buckets.h"

namespace pt::dist::test {
namespace {

int gpu_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

class NcclCollectives : public ::testing::Test {
 protected:
  void SetUp() override {
    const Launch launch = detect_launch();
    if (world().size() < 2 || gpu_count() < launch.local_size)
      GTEST_SKIP() << "NCCL needs one GPU per rank: " << gpu_count() << " GPU(s) for " << launch.local_size
                   << " rank(s) on this machine";
    select_rank_device(launch);
    if (!nccl_) nccl_ = std::make_unique<NcclCommunicator>(std::make_unique<MpiCommunicator>());
  }
  static void TearDownTestSuite() { nccl_.reset(); }
  static std::unique_ptr<NcclCommunicator> nccl_;
};
std::unique_ptr<NcclCommunicator> NcclCollectives::nccl_;

TEST_F(NcclCollectives, AllReduceSumSyncAndAsyncMatchTheCpuSum) {
  for (DType dtype : {DType::f32, DType::f64, DType::i64}) {
    const Shape shape{3, 101};
    Tensor t = rank_input(shape, dtype, 21, nccl_->rank()).to(Device::cuda);
    Tensor u = t.clone();
    nccl_->all_reduce_sum(t);
    nccl_->all_reduce_sum_async(u)->wait();
    const Tensor want = Tensor::from_vector(expected_sum(shape, dtype, 21), shape).to(dtype);
    PT_EXPECT_CLOSE(t.to(Device::cpu), want, pt::test::kElementwiseF32);
    PT_EXPECT_CLOSE(u.to(Device::cpu), want, pt::test::kElementwiseF32);
  }
}

TEST_F(NcclCollectives, BroadcastAllGatherReduceScatterMatchTheCpu) {
  const int n = nccl_->size();
  Tensor b = rank_input({77}, DType::f32, 22, nccl_->rank()).to(Device::cuda);
  nccl_->broadcast(b, n - 1);
  EXPECT_TRUE(pt::test::same_bytes(b.to(Device::cpu), rank_input({77}, DType::f32, 22, n - 1)));

  Tensor out = Tensor::zeros({n, 13}, DType::f32, Device::cuda);
  nccl_->all_gather(rank_input({13}, DType::f32, 23, nccl_->rank()).to(Device::cuda), out);
  for (int r = 0; r < n; ++r)
    EXPECT_TRUE(pt::test::same_bytes(out.to(Device::cpu).narrow(0, r, 1).reshape({13}), rank_input({13}, DType::f32, 23, r)));

  Tensor mine = Tensor::zeros({13}, DType::f32, Device::cuda);
  nccl_->reduce_scatter_sum(rank_input({n, 13}, DType::f32, 24, nccl_->rank()).to(Device::cuda), mine);
  const auto sum = expected_sum({n, 13}, DType::f32, 24);
  const std::vector<double> block(sum.begin() + nccl_->rank() * 13, sum.begin() + (nccl_->rank() + 1) * 13);
  PT_EXPECT_CLOSE(mine.to(Device::cpu), Tensor::from_vector(block, {13}).to(DType::f32), pt::test::kElementwiseF32);
  nccl_->barrier();
}

// Gradient buckets on the GPU: sum_k <p_k, c_k> with rank r's c_k gives gradients c_k; the buckets (started on
// NCCL's own stream during the backward) must leave every gradient equal, bit for bit, to a blocking all-reduce of
// it on the compute stream, and close to the CPU sum.
TEST_F(NcclCollectives, GradientBucketsSumLikeThePerParameterAllReduce) {
  const std::vector<Shape> shapes{{64, 33}, {5}, {300}, {7, 9}};
  std::vector<autograd::Variable> params;
  std::vector<Tensor> constants;
  for (size_t k = 0; k < shapes.size(); ++k) {
    params.emplace_back(Tensor::zeros(shapes[k], DType::f32, Device::cuda), true);
    constants.push_back(rank_input(shapes[k], DType::f32, 30 + k, nccl_->rank()).to(Device::cuda));
  }
  std::vector<autograd::Variable*> registered;
  for (auto& p : params) registered.push_back(&p);
  train::GradientBuckets buckets(*nccl_, registered, 2048);  // several buckets; {64, 33} over the cap
  buckets.arm();
  autograd::Variable loss;
  for (size_t k = 0; k < params.size(); ++k) {
    autograd::Variable term = autograd::sum_all(autograd::mul(params[k], autograd::Variable(constants[k])));
    loss = loss.defined() ? autograd::add(loss, term) : term;
  }
  loss.backward();
  buckets.finish();
  for (size_t k = 0; k < params.size(); ++k) {
    Tensor reference = constants[k].clone();
    nccl_->all_reduce_sum(reference);
    EXPECT_TRUE(pt::test::same_bytes(params[k].grad().to(Device::cpu), reference.to(Device::cpu))) << "param " << k;
    const Tensor want = Tensor::from_vector(expected_sum(shapes[k], DType::f32, 30 + k), shapes[k]).to(DType::f32);
    PT_EXPECT_CLOSE(params[k].grad().to(Device::cpu), want, pt::test::kElementwiseF32);
  }
}

}  // namespace
}  // namespace pt::dist::test
