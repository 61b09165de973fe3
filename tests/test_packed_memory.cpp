// Packed inference owns its memory (nn/linear.h, nn/linear_kernel.h): a layer running a packed sparse kernel for
// inference frees its dense weight and mask; the storage is gone (its last owner dropped it, the allocator's
// counters fall, the resident set falls), the model computes what the dense model computes, and restoring gives
// back W and the mask bit for bit. Whatever needs W restores it first or refuses clearly.
#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "autograd/variable.h"
#include "base/process_memory.h"
#include "nn/linear_kernel.h"
#include "nn/lora.h"
#include "opt/generate.h"
#include "opt/model.h"
#include "opt/perplexity.h"
#include "prune/sequential.h"
#include "sparse/csr.h"
#include "tensor/cpu_caching_allocator.h"
#include "test_util.h"

namespace pt {
namespace {

using sparse::LinearKernel;
using test::expect_error;
using test::random_tensor;
using test::same_bytes;

// Unstructured: each weight kept with probability 1 - sparsity. 2:4 (`two_four`): 2 random positions of every 4,
// and now and then fewer, so the layout pads.
Tensor keep_mask(int64_t out, int64_t in, double sparsity, bool two_four, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> keep(size_t(out * in), 0);
  for (size_t g = 0; g < keep.size() / 4; ++g) {
    if (!two_four) {
      for (size_t j = 0; j < 4; ++j) keep[4 * g + j] = double(rng() % 1000) / 1000.0 >= sparsity;
      continue;
    }
    const size_t a = rng() % 4, b = (a + 1 + rng() % 3) % 4;
    keep[4 * g + a] = 1;
    keep[4 * g + b] = rng() % 6 != 0;
  }
  return Tensor::from_vector(keep, {out, in});
}

// A pruned layer whose weight holds the cases a restore could get wrong: a kept -0.0 and a kept +0.0.
std::unique_ptr<nn::Linear> pruned_layer(int64_t out, int64_t in, double sparsity, bool two_four, uint64_t seed) {
  auto layer = std::make_unique<nn::Linear>(in, out, true);
  Generator gen(seed);
  layer->init_normal(0.2, gen);
  layer->bias.data().copy_(random_tensor({out}, seed + 1));
  layer->set_mask(keep_mask(out, in, sparsity, two_four, seed + 2));
  const std::vector<uint8_t> keep = layer->weight_mask.to_vector<uint8_t>();
  float* w = layer->weight.data().data<float>();
  int zeros = 0;
  for (size_t i = 0; i < keep.size() && zeros < 2; ++i)
    if (keep[i]) w[i] = zeros++ == 0 ? -0.0f : 0.0f;
  return layer;
}

nn::LinearKernelReport run_on(LinearKernel k, const std::vector<std::pair<std::string, nn::Linear*>>& layers,
                              bool release) {
  nn::LinearKernelOptions lo;
  lo.kernel = k;
  lo.release_dense = release;
  lo.auto_options.prefill_tokens = 16;
  return nn::use_linear_kernel(layers, lo);
}

TEST(PackedMemory, ReleasingFreesTheDenseWeightAndMaskAndRestoringGivesThemBackBitForBit) {
  for (const LinearKernel k : {LinearKernel::csr, LinearKernel::bitmap, LinearKernel::two_four}) {
    SCOPED_TRACE(sparse::linear_kernel_name(k));
    auto layer = pruned_layer(96, 160, 0.7, k == LinearKernel::two_four, 5);
    const Tensor w_before = layer->weight.data().clone(), mask_before = layer->weight_mask.clone();
    const std::weak_ptr<Storage> w_storage = layer->weight.data().storage();
    const std::weak_ptr<Storage> mask_storage = layer->weight_mask.storage();
    const int64_t owned = int64_t(w_storage.lock()->nbytes() + mask_storage.lock()->nbytes());
    const autograd::Variable x(random_tensor({7, 160}, 6), false);
    autograd::NoGradGuard no_grad;
    run_on(k, {{"layer", layer.get()}}, false);
    const Tensor y_packed = layer->forward(x).data();

    const size_t allocated = cpu::allocator_stats().allocated_bytes;
    const nn::LinearKernelReport report = run_on(k, {{"layer", layer.get()}}, true);
    EXPECT_TRUE(layer->dense_weight_released());
    EXPECT_TRUE(w_storage.expired());  // the last owner let go: the storage is freed, not hidden
    EXPECT_TRUE(mask_storage.expired());
    EXPECT_FALSE(layer->weight.data().defined());
    EXPECT_FALSE(layer->has_mask());
    EXPECT_EQ(report.released_bytes, owned);
    EXPECT_NE(report.summary(sparse::linear_kernel_name(k)).find("released"), std::string::npos);
    // The allocator's live bytes fall by at least the freed blocks (packing anew costs less than they held).
    EXPECT_LE(cpu::allocator_stats().allocated_bytes + size_t(owned) - size_t(report.stored_bytes), allocated);
    EXPECT_TRUE(same_bytes(layer->forward(x).data(), y_packed));  // the same kernel on the same packed form

    nn::clear_linear_kernels({{"layer", layer.get()}});
    EXPECT_FALSE(layer->dense_weight_released());
    EXPECT_EQ(layer->packed_weight(), nullptr);
    EXPECT_TRUE(same_bytes(layer->weight.data(), w_before));  // -0.0 and the kept +0.0 included
    EXPECT_TRUE(same_bytes(layer->weight_mask, mask_before));
  }
}

TEST(PackedMemory, NothingIsReleasedWhenThePackedFormCannotGiveTheWeightBackOrSharesIt) {
  // masked multiplies by the layer's own W: releasing would free nothing.
  auto shared = pruned_layer(16, 32, 0.5, false, 1);
  EXPECT_EQ(run_on(LinearKernel::masked, {{"layer", shared.get()}}, true).released_bytes, 0);
  EXPECT_FALSE(shared->dense_weight_released());
  EXPECT_TRUE(shared->weight.data().defined());
  // Values packed in f32 cannot give back an f64 weight that f32 cannot hold.
  nn::Linear wide(32, 16, false, Device::cpu, DType::f64);
  wide.weight.data().copy_(random_tensor({16, 32}, 2, -1, 1, DType::f64));
  wide.set_mask(keep_mask(16, 32, 0.5, false, 3));
  wide.set_packed_weight(std::make_shared<sparse::CsrWeight>(wide.weight.data(), wide.weight_mask, DType::f32));
  EXPECT_EQ(wide.release_dense_weight(), 0);
  EXPECT_FALSE(wide.dense_weight_released());
  // A weight that is nonzero where its mask prunes is not what the packed form holds.
  auto stray = pruned_layer(16, 32, 0.5, false, 4);
  stray->set_packed_weight(std::make_shared<sparse::CsrWeight>(stray->weight.data(), stray->weight_mask, DType::f32));
  const std::vector<uint8_t> keep = stray->weight_mask.to_vector<uint8_t>();
  for (size_t i = 0; i < keep.size(); ++i)
    if (!keep[i]) {
      stray->weight.data().data<float>()[i] = 1.0f;
      break;
    }
  EXPECT_EQ(stray->release_dense_weight(), 0);
  EXPECT_FALSE(stray->dense_weight_released());
}

TEST(PackedMemory, AReleasedLayerRestoresBeforeAnythingThatNeedsItsWeightOrRefusesClearly) {
  auto layer = pruned_layer(24, 64, 0.6, false, 7);
  const Tensor w_before = layer->weight.data().clone(), mask_before = layer->weight_mask.clone();
  auto release = [&] {
    run_on(LinearKernel::csr, {{"layer", layer.get()}}, true);
    ASSERT_TRUE(layer->dense_weight_released());
  };
  release();
  // Recording a graph through it stays an error.
  expect_error([&] { layer->forward(autograd::Variable(random_tensor({2, 64}, 8), false)); },
               "packed csr weight for inference");
  // Module operations that read every parameter refuse rather than skip the released weight.
  expect_error([&] { layer->state_dict(); }, "parameter weight holds no data");
  expect_error([&] { layer->to(DType::f64); }, "restore it first");
  expect_error([&] { layer->load_state_dict({}, false); }, "holds no data");
  // A new mask applies to the restored weight.
  const Tensor new_mask = keep_mask(24, 64, 0.8, false, 9);
  layer->set_mask(new_mask);
  EXPECT_FALSE(layer->dense_weight_released());
  EXPECT_EQ(layer->packed_weight(), nullptr);
  EXPECT_TRUE(same_bytes(layer->weight.data(), apply_mask(w_before, new_mask)));
  EXPECT_TRUE(same_bytes(layer->weight_mask, new_mask));
  // clear_mask, attach_adapter and a new packed form each restore first.
  layer->set_mask(mask_before);
  const Tensor w_masked = layer->weight.data().clone();
  release();
  layer->clear_mask();
  EXPECT_TRUE(same_bytes(layer->weight.data(), w_masked));
  EXPECT_FALSE(layer->has_mask());
  layer->set_mask(mask_before);
  release();
  layer->attach_adapter(std::make_shared<nn::ScaleLoraAdapter>(*layer, 4));
  EXPECT_TRUE(same_bytes(layer->weight.data(), w_masked));
  EXPECT_TRUE(same_bytes(layer->weight_mask, mask_before));
  layer->detach_adapter();
  release();
  layer->set_packed_weight(std::make_shared<sparse::CsrWeight>(w_masked, mask_before, DType::f32));
  EXPECT_FALSE(layer->dense_weight_released());
  EXPECT_TRUE(same_bytes(layer->weight.data(), w_masked));
}

std::unique_ptr<opt::OptForCausalLM> pruned_model(const prune::SparsityPattern& pattern, uint64_t seed) {
  opt::OptConfig c = opt::opt_preset("tiny");
  c.num_hidden_layers = 2;
  auto model = std::make_unique<opt::OptForCausalLM>(c, Device::cpu, seed);
  prune::SequentialPruneOptions po;
  po.method = prune::PruneMethod::magnitude;
  po.pattern = pattern;
  po.show_progress = false;
  po.measure_reconstruction = false;
  prune::prune_model(*model, Tensor(), po);
  return model;
}

TEST(PackedMemory, AModelOnReleasedPackedWeightsGivesTheDensePerplexityAndTokensAndComesBackExactly) {
  for (const bool two_four : {false, true}) {
    auto model = pruned_model(two_four ? prune::SparsityPattern::nm(2, 4) : prune::SparsityPattern::unstructured(0.6),
                              11);
    const auto ids = test::learnable_token_stream(2 * 64, model->config().vocab_size, 12);
    opt::PerplexityOptions po;
    po.seqlen = 64;
    po.batch_size = 2;
    po.show_progress = false;
    opt::GenerationOptions go;
    go.max_new_tokens = 10;
    go.eos_token_id = -1;
    go.tokenizer_vocab_size = model->config().vocab_size;
    const std::vector<int64_t> prompt = {3, 141, 59, 26, 5};
    const double dense_ppl = opt::evaluate_perplexity(*model, ids, po).perplexity;
    const auto dense_tokens = opt::generate(*model, prompt, go);
    std::map<std::string, Tensor> saved;  // copies: the state dict itself shares (and would pin) the storage
    for (const auto& [name, t] : model->state_dict()) saved[name] = t.clone();

    const std::vector<LinearKernel> kernels =
        two_four ? std::vector<LinearKernel>{LinearKernel::two_four} : std::vector<LinearKernel>{LinearKernel::csr, LinearKernel::bitmap};
    for (const LinearKernel k : kernels) {
      SCOPED_TRACE(sparse::linear_kernel_name(k) + (two_four ? " (2:4)" : ""));
      run_on(k, model->linear_layers(), false);
      const double kept_ppl = opt::evaluate_perplexity(*model, ids, po).perplexity;
      const nn::LinearKernelReport report = run_on(k, model->linear_layers(), true);
      EXPECT_EQ(report.layers.size(), model->linear_layers().size());
      for (auto& [name, layer] : model->linear_layers()) EXPECT_TRUE(layer->dense_weight_released()) << name;
      EXPECT_GT(report.released_bytes, report.stored_bytes);
      // Released or not, the same kernel gives the same numbers; and they are the dense model's.
      EXPECT_EQ(opt::evaluate_perplexity(*model, ids, po).perplexity, kept_ppl);
      EXPECT_NEAR(kept_ppl, dense_ppl, 1e-5 * dense_ppl);
      EXPECT_EQ(opt::generate(*model, prompt, go), dense_tokens);
      nn::clear_linear_kernels(model->linear_layers());
      for (const auto& [name, t] : model->state_dict()) EXPECT_TRUE(same_bytes(t, saved.at(name))) << name;
    }
    EXPECT_EQ(opt::evaluate_perplexity(*model, ids, po).perplexity, dense_ppl);
  }
}

// The freed blocks leave the process: the CPU allocator gives them back (empty_cache), glibc returns the pages.
TEST(PackedMemory, ReleasedWeightsLeaveTheResidentSet) {
  if (process_memory().resident_bytes < 0) GTEST_SKIP() << "no /proc/self/status";
  std::vector<std::unique_ptr<nn::Linear>> layers;
  std::vector<std::pair<std::string, nn::Linear*>> named;
  for (int i = 0; i < 4; ++i) {  // 4 x (4 MB weight + 1 MB mask)
    layers.push_back(pruned_layer(1024, 1024, 0.9, false, 20 + uint64_t(i)));
    named.emplace_back("layer" + std::to_string(i), layers.back().get());
  }
  run_on(LinearKernel::csr, named, false);
  cpu::empty_cache();
  const int64_t resident = process_memory().resident_bytes;
  const size_t releases = cpu::allocator_stats().num_releases;
  const nn::LinearKernelReport report = run_on(LinearKernel::csr, named, true);
  ASSERT_GE(report.released_bytes, 20'000'000);
  EXPECT_GT(cpu::allocator_stats().num_releases, releases);
  EXPECT_EQ(cpu::allocator_stats().cached_bytes, 0u);
  // Packing again made new CSR copies (~1 MB each); the released 5 MB per layer must show as a net fall.
  EXPECT_LT(process_memory().resident_bytes, resident - report.released_bytes / 2)
      << "resident " << resident << " -> " << process_memory().resident_bytes << " after releasing "
      << report.released_bytes << " bytes";
  nn::clear_linear_kernels(named);
}

}  // namespace
}  // namespace pt
