// Layer streaming (opt/streamed_layers.h) against the in-memory model it must reproduce exactly: on small random
// OPT models written to disk as Hugging Face folders, a streamed sequential prune (every method, unstructured and
// N:M, with the masks of an earlier pass persisting) leaves bit-identical weights and masks in its shards and its
// HDF5 checkpoint; a streamed, layer-major perplexity equals the in-memory one to the last bit wherever the
// activations live; a pass killed after some layers resumes at the first unfinished one and ends identically.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "nn/checkpoint.h"
#include "nn/safetensors.h"
#include "opt/hf_checkpoint.h"
#include "opt/layer_sink.h"
#include "opt/model.h"
#include "opt/perplexity.h"
#include "opt/streamed_layers.h"
#include "opt/weight_source.h"
#include "prune/sequential.h"
#include "tensor/memory_report.h"
#include "tests/test_util.h"

namespace pt::opt {
namespace {

using prune::PruneMethod;
using prune::SequentialPruneOptions;
using prune::SparsityPattern;

constexpr int64_t kLayers = 3, kSamples = 8, kSeqlen = 16;

OptConfig small_config() {
  OptConfig c = opt_preset("tiny");  // hidden 64, ffn 256, 4 heads, vocab 512, context 64
  c.num_hidden_layers = kLayers;
  return c;
}

// Random weights with per-feature LayerNorm gains and nonzero biases (so Wanda and SparseGPT differ from magnitude).
std::unique_ptr<OptForCausalLM> random_model(uint64_t seed) {
  auto model = std::make_unique<OptForCausalLM>(small_config(), Device::cpu, seed);
  Generator gen(seed + 77);
  for (auto& [name, p] : model->named_parameters()) {
    const bool norm = name.find("layer_norm") != std::string::npos;
    const bool bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    if (norm && !bias) p->data() = Tensor::uniform(p->shape(), 0.2, 2.5, gen);
    else if (bias) p->data() = Tensor::uniform(p->shape(), -0.1, 0.1, gen);
  }
  return model;
}

// The model as a Hugging Face folder (one safetensors file, masks beside it as a streamed stage writes them).
void write_folder(OptForCausalLM& model, const std::string& dir) {
  std::filesystem::create_directories(dir);
  std::vector<std::pair<std::string, Tensor>> tensors, masks;
  for (auto& [name, p] : model.named_parameters()) tensors.emplace_back(name, p->data());
  for (auto& [name, lin] : model.linear_layers())
    if (lin->has_mask()) masks.emplace_back(name + ".weight", lin->weight_mask);
  nn::write_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
  if (!masks.empty()) nn::write_safetensors(dir + "/" + mask_file_name(1), masks);
  std::ofstream(dir + "/config.json") << hf_config_json(model.config(), model.lm_head_tied());
}

Tensor random_ids(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, 511);
  std::vector<int32_t> v(size_t(kSamples * kSeqlen));
  for (auto& x : v) x = dist(rng);
  return Tensor::from_vector(v, {kSamples, kSeqlen});
}

SequentialPruneOptions prune_options(PruneMethod method, const SparsityPattern& pattern) {
  SequentialPruneOptions o;
  o.method = method;
  o.pattern = pattern;
  o.forward_batch = 3;  // 8 = 3 + 3 + 2: uneven chunks
  o.show_progress = false;
  o.activations = ActivationPlace::device;
  return o;
}

// Every parameter and mask of `model` equals what `source` holds, bit for bit.
void expect_same_as(OptForCausalLM& model, const WeightSource& source) {
  for (auto& [name, p] : model.named_parameters()) {
    Tensor stored = Tensor::empty(p->shape(), DType::f32, Device::cpu);
    const Tensor mask = source.read_into(name, stored);
    EXPECT_TRUE(test::same_bytes(stored, p->data())) << name << " in " << source.where();
    const size_t dot = name.rfind('.');
    if (name.compare(dot, std::string::npos, ".weight") != 0 || p->data().dim() != 2) continue;
    for (auto& [lname, lin] : model.linear_layers())
      if (lname + ".weight" == name) {
        ASSERT_EQ(mask.defined(), lin->has_mask()) << name;
        if (lin->has_mask()) {
          EXPECT_TRUE(test::same_bytes(mask, lin->weight_mask)) << name << " (mask)";
        }
      }
  }
}

class StreamedLayersTest : public test::TempDirTest {
 protected:
  // A streamed prune of the folder `from` into `to` (shards and masks) and `to`.h5, optionally resuming.
  prune::PruneReport prune_streamed(const std::string& from, const std::string& to, const SequentialPruneOptions& o,
                                    const Tensor& ids) {
    std::shared_ptr<const WeightSource> source = open_weight_source(from);
    const auto finished = HfShardSink::finished_layers(to, source->config(), "test-pass");
    if (!finished.empty()) source = std::make_shared<FinishedLayersSource>(to, finished, source);
    HfShardSink shards(to, source->config(), "test-pass");
    CheckpointSink checkpoint(to + ".h5", nn::SaveOptions{});
    prune::PruneReport report;
    {
      StreamedLayers walk(source, Device::cpu, DType::f32, {&shards, &checkpoint}, finished);
      report = prune::prune_layers(walk, ids, o);
    }
    nn::Checkpoint attributes;
    attributes.model_config = hf_config_json(source->config());
    checkpoint.commit(attributes);
    return report;
  }
};

TEST_F(StreamedLayersTest, PruneIsBitIdenticalToInMemoryForEveryMethodAndPattern) {
  const Tensor ids = random_ids(5);
  int cases = 0;
  for (PruneMethod method : {PruneMethod::magnitude, PruneMethod::wanda, PruneMethod::sparsegpt})
    for (const SparsityPattern& pattern : {SparsityPattern::unstructured(0.5), SparsityPattern::nm(2, 4)}) {
      SCOPED_TRACE(std::string(prune::prune_method_name(method)) + " " + pattern.describe());
      const std::string tag = std::to_string(cases++);
      auto memory = random_model(11);
      write_folder(*memory, path("dense" + tag));
      const SequentialPruneOptions o = prune_options(method, pattern);
      const prune::PruneReport want = prune::prune_model(*memory, ids, o);
      const prune::PruneReport got = prune_streamed(path("dense" + tag), path("pruned" + tag), o, ids);
      EXPECT_EQ(got.pruned_weights, want.pruned_weights);
      EXPECT_GT(got.pruned_weights, 0);
      // Reconstruction errors come from the same Hessians: equal to the last bit.
      ASSERT_EQ(got.matrices.size(), want.matrices.size());
      for (size_t k = 0; k < got.matrices.size(); ++k)
        EXPECT_EQ(got.matrices[k].reconstruction_error, want.matrices[k].reconstruction_error) << got.matrices[k].name;
      expect_same_as(*memory, HfWeightSource(path("pruned" + tag)));
      expect_same_as(*memory, CheckpointWeightSource(path("pruned" + tag) + ".h5"));
      // The folder is what transformers loads: the index names every parameter's shard.
      const HfCheckpoint hf(path("pruned" + tag));
      EXPECT_TRUE(hf.has("model.decoder.layers.2.fc2.weight"));
    }
}

TEST_F(StreamedLayersTest, MasksOfAnEarlierPassPersistIntoTheNext) {
  const Tensor ids = random_ids(6);
  auto memory = random_model(12);
  write_folder(*memory, path("dense"));
  SequentialPruneOptions o = prune_options(PruneMethod::sparsegpt, SparsityPattern::unstructured(0.3));
  prune::prune_model(*memory, ids, o);
  prune_streamed(path("dense"), path("p30"), o, ids);
  std::map<std::string, Tensor> first;
  for (auto& [name, lin] : memory->linear_layers()) first[name] = lin->weight_mask.clone();
  o.pattern = SparsityPattern::unstructured(0.6);
  prune::prune_model(*memory, ids, o);
  prune_streamed(path("p30"), path("p60"), o, ids);  // its masks come from the 30 % pass's masks files
  expect_same_as(*memory, HfWeightSource(path("p60")));
  for (auto& [name, lin] : memory->linear_layers()) {
    const auto was = first.at(name).to_vector<uint8_t>(), now = lin->weight_mask.to_vector<uint8_t>();
    for (size_t k = 0; k < was.size(); ++k) ASSERT_LE(now[k], was[k]) << name << " revived a pruned weight";
  }
}

TEST_F(StreamedLayersTest, PassKilledAfterALayerResumesThereAndEndsIdentically) {
  const Tensor ids = random_ids(7);
  auto memory = random_model(13);
  write_folder(*memory, path("dense"));
  SequentialPruneOptions o = prune_options(PruneMethod::wanda, SparsityPattern::nm(2, 4));
  const prune::PruneReport want = prune::prune_model(*memory, ids, o);
  o.layer_done = [](int64_t i) {
    if (i == 1) throw Error("killed after layer 1");
  };
  EXPECT_THROW(prune_streamed(path("dense"), path("pruned"), o, ids), Error);
  EXPECT_FALSE(std::filesystem::exists(path("pruned") + ".h5"));  // the checkpoint appears only when complete
  EXPECT_FALSE(std::filesystem::exists(path("pruned") + "/model.safetensors.index.json"));
  o.layer_done = nullptr;
  const prune::PruneReport got = prune_streamed(path("dense"), path("pruned"), o, ids);
  EXPECT_EQ(got.resumed_layers, 2);
  EXPECT_EQ(got.pruned_weights, want.pruned_weights);
  ASSERT_EQ(got.layers.size(), want.layers.size());
  for (size_t i = 0; i < got.layers.size(); ++i) {
    EXPECT_EQ(got.layers[i].sparsity, want.layers[i].sparsity);
    EXPECT_EQ(got.layers[i].reconstruction_error, want.layers[i].reconstruction_error);
  }
  expect_same_as(*memory, HfWeightSource(path("pruned")));
  expect_same_as(*memory, CheckpointWeightSource(path("pruned") + ".h5"));
  // Another pass's layers are never taken for this one's.
  test::expect_error([&] { HfShardSink::finished_layers(path("pruned"), memory->config(), "another-pass"); },
                     "written by another pass");
}

TEST_F(StreamedLayersTest, LayerMajorPerplexityEqualsInMemoryWhereverTheActivationsLive) {
  auto memory = random_model(14);
  write_folder(*memory, path("dense"));
  std::mt19937 rng(3);
  std::vector<int32_t> tokens(700);
  for (auto& t : tokens) t = int32_t(rng() % 512);
  PerplexityOptions po;
  po.seqlen = 32;
  po.batch_size = 3;  // 21 windows = 7 batches
  po.show_progress = false;
  const PerplexityResult want = evaluate_perplexity(*memory, tokens, po);
  EXPECT_GT(want.perplexity, 100.0);  // a random model on random tokens: near the vocabulary size
  for (ActivationPlace place : {ActivationPlace::device, ActivationPlace::host, ActivationPlace::disk}) {
    for (bool prefetch : {true, false}) {
      SCOPED_TRACE(std::string(activation_place_name(place)) + (prefetch ? " prefetch" : " on demand"));
      StreamedLayers walk(open_weight_source(path("dense")), Device::cpu, DType::f32, {}, {}, prefetch);
      po.activations = place;
      po.activation_dir = dir_.string();
      const PerplexityResult got = evaluate_perplexity(walk, tokens, po);
      EXPECT_EQ(got.mean_nll, want.mean_nll);
      EXPECT_EQ(got.perplexity, want.perplexity);
      EXPECT_EQ(got.windows, want.windows);
    }
  }
}

TEST_F(StreamedLayersTest, DiskActivationStoreRoundTripsAndLeavesNoFile) {
  const Tensor a = test::random_tensor({5, 7, 9}, 21);
  {
    ActivationStore store(5, 7, 9, DType::f32, Device::cpu, ActivationPlace::disk, dir_.string());
    store.write(0, a.narrow(0, 0, 2));
    store.write(2, a.narrow(0, 2, 3));
    EXPECT_TRUE(test::same_bytes(store.read(1, 3), a.narrow(0, 1, 3).contiguous()));
    EXPECT_TRUE(test::same_bytes(store.whole(), a));
    test::expect_error([&] { store.read(4, 2); }, "outside [0, 5)");
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir_));  // unlinked when created
  test::expect_error([] { ActivationStore(1, 1, 1, DType::f32, Device::cpu, ActivationPlace::disk, "/no/such/dir"); },
                     "/no/such/dir");
}

TEST_F(StreamedLayersTest, MismatchedShardIsOneLineNamingTheTensor) {
  auto memory = random_model(15);
  write_folder(*memory, path("dense"));
  StreamedLayers walk(open_weight_source(path("dense")), Device::cpu, DType::f32);
  EXPECT_EQ(walk.config().ffn_dim, 256);
  auto source = open_weight_source(path("dense"));
  Tensor wrong = Tensor::empty({128, 64}, DType::f32, Device::cpu);
  test::expect_error([&] { source->read_into("model.decoder.layers.0.fc1.weight", wrong); }, "fc1.weight");
}

// The bound, small enough for CI: a deep model of OPT's proportions (ffn = 4 x hidden) written layer by layer (one
// shard per layer, as a streamed stage writes them), pruned with SparseGPT from disk into shards and a checkpoint,
// then evaluated layer-major. The resident set may grow by 35 % of the model's bytes at most (VmHWM of
// /proc/self/status, reset to the current resident set at the start). What it grows by: two layer slots, the
// layer's Hessians and SparseGPT's factorisation of the largest (the allocator's pool, ~6 layers' bytes), and a
// fixed ~10 MB that the first layer touches (BLAS and OpenMP buffers, HDF5's caches, the I/O thread). It failed
// when the shards were memory-mapped: the kernel maps the pages around every fault, and about half of each shard
// read stayed resident (+0.4 MB per 0.8 MB layer), so the resident set grew with the depth of the model.
TEST_F(StreamedLayersTest, PeakResidentSetStaysFarBelowTheModelsBytes) {
  OptConfig c = opt_preset("tiny");
  c.num_hidden_layers = 96;
  c.hidden_size = c.word_embed_proj_dim = 192;
  c.ffn_dim = 768;
  c.num_attention_heads = 4;
  int64_t model_bytes = 0;
  {
    const std::string dir = path("deep");
    std::filesystem::create_directories(dir);
    nlohmann::ordered_json index;
    index["weight_map"] = nlohmann::ordered_json::object();
    auto ends = OptForCausalLM::without_layers(c, Device::cpu, DType::f32);
    Generator gen(31);
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (auto& [name, p] : ends->named_parameters()) tensors.emplace_back(name, Tensor::normal(p->shape(), 0.0, 0.02, gen));
    auto write = [&](const std::string& file) {
      for (auto& [name, t] : tensors) index["weight_map"][name] = file, model_bytes += t.nbytes();
      nn::write_safetensors(dir + "/" + file, tensors);
      tensors.clear();
    };
    write("ends.safetensors");
    const DecoderLayer shape(c, Device::cpu, DType::f32, 0);
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      for (auto& [name, p] : shape.named_parameters())
        tensors.emplace_back(layer_prefix(i) + name, name.find("layer_norm.weight") != std::string::npos
                                                         ? Tensor::uniform(p->shape(), 0.5, 1.5, gen)
                                                         : Tensor::normal(p->shape(), 0.0, 0.05, gen));
      write("layer" + std::to_string(i) + ".safetensors");
    }
    std::ofstream(dir + "/model.safetensors.index.json") << index.dump();
    std::ofstream(dir + "/config.json") << hf_config_json(c);
  }
  reset_memory_peaks();
  const int64_t start = current_rss_bytes();
  const Tensor ids = random_ids(8);
  prune_streamed(path("deep"), path("deep-pruned"), prune_options(PruneMethod::sparsegpt, SparsityPattern::unstructured(0.5)), ids);
  std::vector<int32_t> tokens(4 * 64);
  for (size_t k = 0; k < tokens.size(); ++k) tokens[k] = int32_t((k * 7919) % 512);
  PerplexityOptions po;
  po.seqlen = 64;
  po.batch_size = 2;
  po.show_progress = false;
  StreamedLayers walk(open_weight_source(path("deep-pruned")), Device::cpu, DType::f32);
  EXPECT_GT(evaluate_perplexity(walk, tokens, po).perplexity, 1.0);
  const MemoryPeaks peaks = memory_peaks();
  if (!peaks.host_rss_reset) GTEST_SKIP() << "the kernel does not reset VmHWM (/proc/self/clear_refs)";
  const double grown = double(peaks.host_rss_bytes - start);
  std::printf("model %.1f MB; resident set %.1f MB at the start, peak %.1f MB (+%.1f%% of the model); tensors %.1f MB, pool %.1f MB\n",
              double(model_bytes) / 1e6, double(start) / 1e6, double(peaks.host_rss_bytes) / 1e6,
              100 * grown / double(model_bytes), double(peaks.host_tensor_bytes) / 1e6, double(peaks.host_pool_bytes) / 1e6);
  EXPECT_LT(grown, 0.35 * double(model_bytes));
}

}  // namespace
}  // namespace pt::opt
