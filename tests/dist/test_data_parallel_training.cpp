// Data-parallel retraining on 2+ ranks against the same training in one process: the same global batches give
// the same loss curve (within f32 rounding of the summed gradients), the same parameters on every rank (bit for
// bit), pruned weights exactly 0.0, and a checkpoint written by the ranks resumes in one process.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include <unistd.h>

#include "opt/model.h"
#include "prune/sequential.h"
#include "tests/dist/world_fixture.h"
#include "tests/test_util.h"
#include "train/gradient_buckets.h"
#include "train/trainer.h"

namespace pt::dist::test {
namespace {

std::unique_ptr<opt::OptForCausalLM> pruned_model() {
  opt::OptConfig c = opt::opt_preset("tiny");
  c.num_hidden_layers = 2;
  c.dropout = 0.0;  // dropout masks are drawn per micro-batch, so ranks would draw other ones than one process
  c.attention_dropout = 0.0;
  auto model = std::make_unique<opt::OptForCausalLM>(c, Device::cpu, 8);
  prune::SequentialPruneOptions po;
  po.method = prune::PruneMethod::magnitude;
  po.measure_reconstruction = false;
  po.show_progress = false;
  prune::prune_model(*model, Tensor(), po);
  return model;
}

std::vector<int32_t> tokens(int64_t n) {
  std::mt19937_64 rng(9);
  std::uniform_int_distribution<int32_t> d(0, 511);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

train::TrainOptions options(int64_t steps) {
  train::TrainOptions o;
  o.steps = steps;
  o.batch_size = 3;  // uneven over 2 ranks
  o.grad_accum = 2;
  o.seqlen = 16;
  o.schedule.base_lr = 3e-3;
  o.weight_decay = 0.01;
  o.max_grad_norm = 0.5;  // clipping acts: the summed gradient's norm is what is clipped
  o.adamw.kernel = "fused";
  o.show_progress = false;
  o.log = [](const std::string&) {};
  return o;
}

TEST(DataParallel, RetrainingOnSeveralRanksFollowsTheOneProcessRun) {
  const auto data = tokens(4000);
  auto alone = pruned_model(), together = pruned_model();
  const auto ra = train::train_model(*alone, train::all_parameters(*alone), data, {}, options(5));
  train::TrainOptions o = options(5);
  o.comm = &world();
  const auto rt = train::train_model(*together, train::all_parameters(*together), data, {}, o);
  ASSERT_EQ(rt.history.size(), ra.history.size());
  for (size_t s = 0; s < ra.history.size(); ++s) {
    EXPECT_NEAR(rt.history[s].loss, ra.history[s].loss, 1e-5 * ra.history[s].loss) << "step " << s + 1;
    EXPECT_NEAR(rt.history[s].grad_norm, ra.history[s].grad_norm, 1e-4 * ra.history[s].grad_norm) << "step " << s + 1;
  }
  const auto pa = alone->named_parameters(), pt_ = together->named_parameters();
  for (size_t k = 0; k < pa.size(); ++k) {
    SCOPED_TRACE(pa[k].first);
    PT_EXPECT_CLOSE(pt_[k].second->data(), pa[k].second->data(), (pt::test::Tolerance{1e-3, 1e-5}));
    EXPECT_TRUE(same_on_every_rank(pt_[k].second->data()));
  }
  for (auto& [name, lin] : together->linear_layers()) {
    if (!lin->has_mask()) continue;
    const auto w = lin->weight.data().to_vector<float>();
    const auto keep = lin->weight_mask.to_vector<uint8_t>();
    for (size_t i = 0; i < w.size(); ++i)
      if (!keep[i]) {
        ASSERT_EQ(w[i], 0.0f) << name << " element " << i;
      }
  }
}

// The bucketed gradient sums (overlapped with the backward) against one blocking all-reduce per parameter: the
// same two numbers are added for every element, so the parameters agree bit for bit, for any cap.
TEST(DataParallel, BucketedGradientSumsEqualThePerParameterOnesBitForBit) {
  const auto data = tokens(4000);
  auto run = [&](int64_t bucket_bytes) {
    auto model = pruned_model();
    train::TrainOptions o = options(4);
    o.comm = &world();
    o.bucket_bytes = bucket_bytes;
    const auto r = train::train_model(*model, train::all_parameters(*model), data, {}, o);
    return std::make_pair(std::move(model), r);
  };
  const auto [reference, rr] = run(0);
  // A cap of 4 KiB: many buckets, the embedding over the cap; the default: one bucket.
  for (int64_t cap : {int64_t(4096), train::kDefaultBucketBytes}) {
    SCOPED_TRACE("cap " + std::to_string(cap) + " bytes");
    const auto [bucketed, rb] = run(cap);
    for (size_t s = 0; s < rr.history.size(); ++s) {
      EXPECT_EQ(rb.history[s].loss, rr.history[s].loss) << "step " << s + 1;
      EXPECT_EQ(rb.history[s].grad_norm, rr.history[s].grad_norm) << "step " << s + 1;
    }
    const auto pr = reference->named_parameters(), pb = bucketed->named_parameters();
    for (size_t k = 0; k < pr.size(); ++k)
      EXPECT_TRUE(pt::test::same_bytes(pb[k].second->data(), pr[k].second->data())) << pr[k].first;
  }
}

TEST(DataParallel, ACheckpointOfSeveralRanksResumesInOneProcess) {
  const auto data = tokens(4000);
  // Every rank's temporary folder name is rank 0's (the ranks write one checkpoint together).
  const std::string dir = "/tmp/pt_dist_resume_" + std::to_string(long(world().all_gather(double(getpid()))[0]));
  if (world().rank() == 0) std::filesystem::create_directories(dir);
  world().barrier();
  auto first = pruned_model();
  train::TrainOptions o = options(2);
  o.comm = &world();
  o.checkpoint_path = dir + "/train.h5";
  train::train_model(*first, train::all_parameters(*first), data, {}, o);  // stops after step 2: checkpoint

  auto resumed = pruned_model(), straight = pruned_model();
  train::TrainOptions alone = options(4);
  const auto rs = train::train_model(*straight, train::all_parameters(*straight), data, {}, alone);
  if (world().rank() == 0) {  // one process continues the ranks' checkpoint (a copy: the others keep reading)
    alone.checkpoint_path = dir + "/resumed.h5";
    std::filesystem::copy_file(dir + "/train.h5", alone.checkpoint_path);
    const auto rr = train::train_model(*resumed, train::all_parameters(*resumed), data, {}, alone);
    EXPECT_EQ(rr.resumed_from, 2);
    ASSERT_EQ(rr.history.size(), rs.history.size());
    for (size_t s = 0; s < rs.history.size(); ++s)
      EXPECT_NEAR(rr.history[s].loss, rs.history[s].loss, 1e-5 * rs.history[s].loss) << "step " << s + 1;
    std::filesystem::remove_all(dir);
  }
  world().barrier();
}

}  // namespace
}  // namespace pt::dist::test
