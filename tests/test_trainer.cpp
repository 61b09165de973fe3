// The training loop: batches (TokenWindows), parameter groups, learning on a learnable stream, bit-identical
// resume after a crash, masks held at zero, and bf16 autocast on CUDA.
#include <gtest/gtest.h>

#include <filesystem>

#include "autograd/autocast.h"
#include "autograd/functions.h"
#include "nn/checkpoint.h"
#include "opt/perplexity.h"
#include "test_util.h"
#include "train/token_windows.h"
#include "train/trainer.h"

namespace pt::test {
namespace {


opt::OptConfig tiny_config(double dropout) {
  opt::OptConfig c = opt::opt_preset("tiny");
  c.dropout = dropout;
  return c;
}

train::TrainOptions small_options() {
  train::TrainOptions o;
  o.steps = 10;
  o.batch_size = 4;
  o.grad_accum = 2;
  o.seqlen = 32;
  o.schedule.base_lr = 3e-3;
  o.schedule.kind = nn::LrScheduleKind::cosine;
  o.schedule.warmup_steps = 2;
  o.schedule.total_steps = 10;
  o.weight_decay = 0.1;
  o.max_grad_norm = 0.5;
  o.adamw.kernel = "reference";
  o.eval_every = 4;
  o.eval_seqlen = 32;
  o.eval_windows = 3;
  o.final_eval_windows = 6;
  o.seed = 7;
  o.show_progress = false;
  o.log = [](const std::string&) {};
  o.run_config = "[test]\nsteps = 10\n";
  return o;
}

// Prunes half of layer 0's fc1 (a fixed random keep-mask), so training must hold those zeros.
void prune_fc1(opt::OptForCausalLM& m) {
  nn::Linear& fc1 = m.layer(0).fc1;
  Tensor r = random_tensor(fc1.weight.shape(), 99, 0.0, 1.0);
  fc1.set_mask(pt::compare_scalar(r, 0.5, CompareOp::gt));
}

TEST(TokenWindows, EveryEpochVisitsEveryWindowOnceAndBatchesAreSlices) {
  std::vector<int32_t> tokens(1000);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t(i);
  train::TokenWindows w(tokens, 32, 5);
  const int64_t n = w.windows_per_epoch();
  EXPECT_EQ(n, 1000 / 32 - 1);
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    std::vector<int64_t> starts;
    for (int64_t i = 0; i < n; ++i) starts.push_back(w.start_of(epoch * n + i));
    std::sort(starts.begin(), starts.end());
    for (int64_t i = 1; i < n; ++i) EXPECT_EQ(starts[size_t(i)] - starts[size_t(i - 1)], 32);  // a grid, no repeats
    EXPECT_GE(starts.front(), 0);
    EXPECT_LE(starts.back() + 32, 1000);
  }
  Tensor b = w.batch(3, 4);
  ASSERT_EQ(b.shape(), (Shape{4, 32}));
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t t = 0; t < 32; ++t) EXPECT_EQ(b.data<int32_t>()[r * 32 + t], int32_t(w.start_of(3 + r) + t));
  // Deterministic per seed, different across seeds.
  train::TokenWindows same(tokens, 32, 5), other(tokens, 32, 6);
  int differ = 0;
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(same.start_of(i), w.start_of(i));
    differ += other.start_of(i) != w.start_of(i);
  }
  EXPECT_GT(differ, n / 2);
  expect_error([&] { train::TokenWindows(std::vector<int32_t>(40, 0), 32, 0); }, "fewer than two windows");
}

TEST(Trainer, ParameterGroupsFollowHuggingFaceAndCarryMasks) {
  opt::OptForCausalLM m(tiny_config(0.0), Device::cpu, 1);
  prune_fc1(m);
  int64_t masked = 0;
  for (const auto& p : train::all_parameters(m)) {
    const bool no_decay = p.name.find(".bias") != std::string::npos || p.name.find("layer_norm") != std::string::npos;
    EXPECT_EQ(p.weight_decay, !no_decay) << p.name;
    if (p.keep.defined()) {
      ++masked;
      EXPECT_EQ(p.name, "model.decoder.layers.0.fc1.weight");
    }
  }
  EXPECT_EQ(masked, 1);
}

TEST(Trainer, LossGoesDownAndTestPerplexityImproves) {
  opt::OptForCausalLM m(tiny_config(0.0), Device::cpu, 3);
  const auto train_ids = learnable_token_stream(30000, 512, 1), eval_ids = learnable_token_stream(4096, 512, 2);
  opt::PerplexityOptions po;
  po.seqlen = 32;
  po.show_progress = false;
  const double before = opt::evaluate_perplexity(m, eval_ids, po).perplexity;
  train::TrainOptions o = small_options();
  o.steps = 60;
  o.schedule.total_steps = 60;
  o.grad_accum = 1;
  o.batch_size = 8;
  o.final_eval_windows = 0;
  const train::TrainResult r = train::train_model(m, train::all_parameters(m), train_ids, eval_ids, o);
  ASSERT_EQ(r.history.size(), 60u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) {
    first += r.history[size_t(i)].loss / 5;
    last += r.history[size_t(55 + i)].loss / 5;
  }
  EXPECT_LT(last, first - 1.0) << "training loss did not go down: " << first << " -> " << last;
  EXPECT_GT(before, 300.0);  // random init over 512 ids
  EXPECT_LT(r.final_perplexity(), before / 4) << "test perplexity " << before << " -> " << r.final_perplexity();
  const double after = opt::evaluate_perplexity(m, eval_ids, po).perplexity;  // the model itself was trained
  EXPECT_NEAR(after, r.final_perplexity(), 1e-6 * after);
}

class TrainerResume : public TempDirTest {};

// Stopping after any step and starting again gives the losses, evaluations and weights of an uninterrupted
// run bit for bit (dropout, gradient accumulation, clipping, a schedule, weight decay and a mask included).
TEST_F(TrainerResume, CrashAndResumeIsBitIdentical) {
  const auto train_ids = learnable_token_stream(20000, 512, 11), eval_ids = learnable_token_stream(2048, 512, 12);
  opt::OptForCausalLM full(tiny_config(0.1), Device::cpu, 5);
  prune_fc1(full);
  train::TrainOptions o = small_options();
  o.checkpoint_every = 3;
  o.checkpoint_path = path("full.h5");
  const train::TrainResult a = train::train_model(full, train::all_parameters(full), train_ids, eval_ids, o);

  for (int64_t crash_after : {1, 4, 7, 9}) {
    SCOPED_TRACE("crash after step " + std::to_string(crash_after));
    const std::string ck = path("resumed" + std::to_string(crash_after) + ".h5");
    opt::OptForCausalLM first(tiny_config(0.1), Device::cpu, 5);
    prune_fc1(first);
    train::TrainOptions oc = o;
    oc.checkpoint_path = ck;
    oc.after_step = [&](int64_t s) {
      if (s == crash_after) throw std::runtime_error("simulated crash");
    };
    EXPECT_THROW(train::train_model(first, train::all_parameters(first), train_ids, eval_ids, oc), std::runtime_error);
    // A rerun builds the model afresh (the pruning stage's mask included). Once a checkpoint exists its
    // weights replace the init, so a different init seed must not matter then.
    opt::OptForCausalLM second(tiny_config(0.1), Device::cpu, crash_after >= o.checkpoint_every ? 77 : 5);
    prune_fc1(second);
    oc.after_step = nullptr;
    const train::TrainResult b = train::train_model(second, train::all_parameters(second), train_ids, eval_ids, oc);
    EXPECT_EQ(b.resumed_from, (crash_after / 3) * 3);
    ASSERT_EQ(b.history.size(), a.history.size());
    for (size_t i = 0; i < a.history.size(); ++i) {
      EXPECT_EQ(b.history[i].loss, a.history[i].loss) << "step " << i + 1;
      EXPECT_EQ(b.history[i].grad_norm, a.history[i].grad_norm) << "step " << i + 1;
      EXPECT_EQ(b.history[i].lr, a.history[i].lr);
    }
    ASSERT_EQ(b.evals.size(), a.evals.size());
    for (size_t i = 0; i < a.evals.size(); ++i) EXPECT_EQ(b.evals[i].perplexity, a.evals[i].perplexity);
    const auto pa = full.named_parameters(), pb = second.named_parameters();
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(same_bytes(pb[i].second->data(), pa[i].second->data())) << pa[i].first;
  }
  // The mask held: every pruned fc1 weight is exactly zero after training, and in the checkpoint.
  const Tensor w = full.layer(0).fc1.weight.data(), keep = full.layer(0).fc1.weight_mask;
  int64_t pruned = 0;
  for (int64_t i = 0; i < w.numel(); ++i)
    if (keep.data<uint8_t>()[i] == 0) {
      ++pruned;
      EXPECT_EQ(w.data<float>()[i], 0.0f);
    }
  EXPECT_GT(pruned, w.numel() / 3);
  const nn::Checkpoint saved = nn::load_checkpoint(o.checkpoint_path);
  EXPECT_EQ(saved.step, 10);
  EXPECT_TRUE(saved.masks.count("model.decoder.layers.0.fc1.weight"));
  ASSERT_TRUE(saved.optimizer.has_value());
  EXPECT_EQ(saved.optimizer->step, 10);
}

TEST_F(TrainerResume, RefusesACheckpointOfAnotherConfiguration) {
  const auto train_ids = learnable_token_stream(5000, 512, 11);
  opt::OptForCausalLM m(tiny_config(0.0), Device::cpu, 5);
  train::TrainOptions o = small_options();
  o.steps = 2;
  o.schedule.total_steps = 2;
  o.schedule.warmup_steps = 0;
  o.checkpoint_path = path("ck.h5");
  train::train_model(m, train::all_parameters(m), train_ids, {}, o);
  const auto bytes = std::filesystem::file_size(o.checkpoint_path);
  o.run_config = "[test]\nsteps = 3\n";
  expect_error([&] { train::train_model(m, train::all_parameters(m), train_ids, {}, o); }, "another configuration");
  EXPECT_EQ(std::filesystem::file_size(o.checkpoint_path), bytes);  // untouched
}

TEST(Autocast, IsANoOpOnTheCpu) {
  opt::OptForCausalLM m(tiny_config(0.0), Device::cpu, 5);
  Tensor ids = Tensor::from_vector<int64_t>({5, 9, 3, 7, 1, 2, 8, 4}, {2, 4});
  const Tensor plain = m.forward(ids).data();
  autograd::AutocastGuard amp(DType::bf16);
  EXPECT_TRUE(autograd::autocast_enabled());
  EXPECT_TRUE(same_bytes(m.forward(ids).data(), plain));
  expect_error([] { autograd::AutocastGuard bad(DType::f64); }, "bf16 or f16");
}

TEST(Autocast, Bf16ProductsKeepFp32MasterGradientsOnCuda) {
  PT_SKIP_IF_NO_CUDA();
  opt::OptForCausalLM m(tiny_config(0.0), Device::cuda, 5);
  Tensor ids = Tensor::from_vector<int64_t>({5, 9, 3, 7, 1, 2, 8, 4, 6, 0, 11, 12}, {2, 6}).to(Device::cuda);
  autograd::Variable ref = m.loss(ids, ids);
  ref.backward();
  std::vector<Tensor> ref_grads;
  for (auto* p : m.parameters()) ref_grads.push_back(p->grad().to(Device::cpu));
  m.zero_grad();
  autograd::Variable low;
  {
    autograd::AutocastGuard amp(DType::bf16);
    low = m.loss(ids, ids);
    EXPECT_EQ(m.forward(ids).dtype(), DType::f32);  // logits come back in f32 for the loss
  }
  EXPECT_EQ(low.dtype(), DType::f32);
  EXPECT_NEAR(low.data().item(), ref.data().item(), 2e-2 * std::abs(ref.data().item()));
  low.backward();
  size_t i = 0;
  for (auto* p : m.parameters()) {
    ASSERT_EQ(p->grad().dtype(), DType::f32);
    PT_EXPECT_CLOSE(p->grad().to(Device::cpu), ref_grads[i++], (Tolerance{5e-2, 5e-3}));
  }
}

}  // namespace
}  // namespace pt::test
