// The sequential driver on whole models: SparseGPT beats magnitude end to end on a model trained on WikiText-2,
// and the CUDA driver agrees with the CPU one (skipped without a GPU).
#include "tests/sequential_prune_fixtures.h"

namespace pt::prune {
namespace {

using namespace sequential_fixtures;

// WikiText-2 as OPT ids, remapped to a 512-id vocabulary so a tiny model trains in seconds: the 509 most
// frequent train ids become 3..511 in order of frequency, BOS stays 2, every other id becomes 0; id 1 (OPT's
// padding row, which gets no gradient) is never used.
struct SmallVocabWikiText {
  std::vector<int32_t> train, test;
};

std::optional<SmallVocabWikiText> load_small_vocab_wikitext(size_t train_rows, size_t test_rows) {
  const std::string data = pt::test::source_dir() + "/data";
  const std::string train_path = corpus::default_wikitext_path(data, corpus::WikiTextSplit::Train);
  const std::string test_path = corpus::default_wikitext_path(data, corpus::WikiTextSplit::Test);
  for (const std::string& p : {train_path, test_path, data + "/opt-tokenizer/vocab.json"})
    if (!std::filesystem::exists(p)) return std::nullopt;
  corpus::Gpt2Tokenizer tok(data + "/opt-tokenizer/vocab.json", data + "/opt-tokenizer/merges.txt");
  corpus::WikiTextFile train = corpus::read_wikitext_split(train_path, corpus::WikiTextSplit::Train);
  corpus::WikiTextFile test = corpus::read_wikitext_split(test_path, corpus::WikiTextSplit::Test);
  train.rows.resize(std::min(train.rows.size(), train_rows));
  test.rows.resize(std::min(test.rows.size(), test_rows));
  SmallVocabWikiText out{tok.encode(corpus::sparsegpt_train_text(train)), tok.encode(corpus::sparsegpt_eval_text(test))};
  std::unordered_map<int32_t, int64_t> freq;
  for (int32_t t : out.train) ++freq[t];
  std::vector<std::pair<int64_t, int32_t>> by_freq;
  for (auto [id, n] : freq)
    if (id != 2) by_freq.push_back({-n, id});
  std::sort(by_freq.begin(), by_freq.end());
  std::unordered_map<int32_t, int32_t> remap{{2, 2}};
  for (size_t r = 0; r < std::min<size_t>(509, by_freq.size()); ++r) remap[by_freq[r].second] = int32_t(3 + r);
  for (auto* stream : {&out.train, &out.test})
    for (int32_t& t : *stream) t = remap.count(t) ? remap[t] : 0;
  return out;
}

// A model this small and this briefly trained is robust to 50% sparsity under every method: their perplexities
// differ by less than 1.5%, and which is lowest changes with the training seed (magnitude won on 3 of 5 seeds
// tried). So 50% checks that SparseGPT stays close to lossless, and the order of the methods is checked at 80%,
// where magnitude clearly hurts (on those 5 seeds SparseGPT lost 2-45% of what magnitude lost).
TEST(SequentialPrune, EndToEndSparseGptKeepsATrainedModelBetterThanMagnitude) {
  const auto text = load_small_vocab_wikitext(6000, 300);
  if (!text) GTEST_SKIP() << "WikiText-2 or the OPT tokenizer is missing under data/ (ln -s /work/shared/data data)";
  const auto t0 = std::chrono::steady_clock::now();
  OptConfig c = opt::opt_preset("tiny");  // 2 layers, hidden 64, ffn 256, vocab 512, context 64
  c.dropout = 0.0;
  OptForCausalLM model(c, Device::cpu, 31);

  // Train: AdamW (unfused), batches of 16 random windows of 64 tokens, lr 5e-3 after 20 warm-up steps.
  std::vector<nn::AdamWParamGroup> groups(1);
  for (autograd::Variable* p : model.parameters()) groups[0].params.push_back(*p);
  nn::AdamW adamw(std::move(groups), nn::AdamWConfig{0.9, 0.99, 1e-8, "unfused"});
  std::mt19937_64 rng(32);
  std::uniform_int_distribution<int64_t> start(0, int64_t(text->train.size()) - 65);
  const int64_t steps = 200, B = 16, T = 64;
  for (int64_t step = 0; step < steps; ++step) {
    std::vector<int64_t> batch(static_cast<size_t>(B * T));
    for (int64_t b = 0; b < B; ++b) {
      const int64_t s = start(rng);
      for (int64_t t = 0; t < T; ++t) batch[size_t(b * T + t)] = text->train[size_t(s + t)];
    }
    const Tensor ids = Tensor::from_vector(batch, {B, T});
    model.loss(ids, ids).backward();
    adamw.step(5e-3 * std::min(1.0, double(step + 1) / 20.0));
    adamw.zero_grad();
  }
  const double train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  opt::PerplexityOptions po;
  po.seqlen = 64;
  po.batch_size = 16;
  po.show_progress = false;
  const double dense = opt::evaluate_perplexity(model, text->test, po).perplexity;

  const Tensor calibration = sample_calibration_windows(text->train, 64, 64, 0);
  std::map<std::pair<double, PruneMethod>, double> ppl;
  for (double sparsity : {0.5, 0.8})
    for (PruneMethod method : {PruneMethod::magnitude, PruneMethod::wanda, PruneMethod::sparsegpt}) {
      OptForCausalLM copy(c, Device::cpu, 0);
      copy.load_state_dict(model.state_dict());
      SequentialPruneOptions o = options(method, sparsity);
      o.forward_batch = 16;
      prune_model(copy, calibration, o);
      ppl[{sparsity, method}] = opt::evaluate_perplexity(copy, text->test, po).perplexity;
    }
  const double total_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("tiny OPT trained %lld steps on WikiText-2 (%zu train / %zu test ids, %.1fs); test perplexity: dense %.3f\n",
              (long long)steps, text->train.size(), text->test.size(), train_seconds, dense);
  for (double s : {0.5, 0.8})
    std::printf("  %.0f%%: sparsegpt %.3f, wanda %.3f, magnitude %.3f\n", 100 * s, ppl[{s, PruneMethod::sparsegpt}],
                ppl[{s, PruneMethod::wanda}], ppl[{s, PruneMethod::magnitude}]);
  std::printf("  (%.1fs in all)\n", total_seconds);

  EXPECT_LT(dense, 40.0) << "the model should have learned more than token frequencies";
  const double sgpt50 = ppl[{0.5, PruneMethod::sparsegpt}];
  const double sgpt80 = ppl[{0.8, PruneMethod::sparsegpt}], mag80 = ppl[{0.8, PruneMethod::magnitude}];
  EXPECT_LT(sgpt50, 1.02 * dense) << "SparseGPT at 50% should be close to lossless";
  EXPECT_LT(sgpt80, mag80);
  EXPECT_LT(sgpt80 - dense, 0.75 * (mag80 - dense)) << "SparseGPT should lose well under magnitude's perplexity";
}

// ---- CUDA ---------------------------------------------------------------------------------------------------

TEST(CudaSequentialPrune, CpuAndCudaDriversAgree) {
  PT_SKIP_IF_NO_CUDA();
  const Tensor ids = random_ids(kSamples, kSeqlen, 512, 40);
  for (PruneMethod method : {PruneMethod::magnitude, PruneMethod::wanda, PruneMethod::sparsegpt}) {
    for (const std::string kernel : {"unfused", "fused"}) {  // the shorthand: fused is the reference loops on the CPU
      SCOPED_TRACE(std::string(prune_method_name(method)) + " " + kernel);
      auto cpu = make_model(39, Device::cpu), gpu = make_model(39, Device::cuda);
      SequentialPruneOptions o = options(method, 0.5);
      kernels::ScopedSelection shorthand;
      shorthand.shorthand(kernel);
      const PruneReport rc = prune_model(*cpu, ids, o);
      const PruneReport rg = prune_model(*gpu, ids, o);
      const auto lc = cpu->linear_layers(), lg = gpu->linear_layers();
      int64_t agree = 0, total = 0;
      double max_diff = 0, scale = 0;
      for (size_t k = 0; k < lc.size(); ++k) {
        const auto kc = lc[k].second->weight_mask.to_vector<uint8_t>();
        const auto kg = lg[k].second->weight_mask.to_vector<uint8_t>();
        const auto wc = lc[k].second->weight.data().to_vector<double>();
        const auto wg = lg[k].second->weight.data().to_vector<double>();
        EXPECT_EQ(zeros(lg[k].second->weight_mask), expected_pruned(method, lg[k].second->weight_mask, 0.5)) << lc[k].first;
        for (size_t e = 0; e < kc.size(); ++e) {
          agree += kc[e] == kg[e];
          if (kc[e] && kg[e]) max_diff = std::max(max_diff, std::abs(wc[e] - wg[e]));
          scale = std::max(scale, std::abs(wc[e]));
        }
        total += int64_t(kc.size());
      }
      EXPECT_GE(double(agree) / double(total), 0.999);
      EXPECT_LT(max_diff, 1e-3 * scale);
      EXPECT_NEAR(rg.reconstruction_error, rc.reconstruction_error, 1e-2 * rc.reconstruction_error);
    }
  }
}

TEST(CudaSequentialPrune, OffloadedActivationsGiveIdenticalResults) {
  PT_SKIP_IF_NO_CUDA();
  const Tensor ids = random_ids(kSamples, kSeqlen, 512, 42);
  auto a = make_model(41, Device::cuda), b = make_model(41, Device::cuda);
  SequentialPruneOptions o = options(PruneMethod::sparsegpt, 0.5);
  o.activations = opt::ActivationPlace::device;
  prune_model(*a, ids, o);
  o.activations = opt::ActivationPlace::host;
  prune_model(*b, ids, o);
  const auto la = a->linear_layers(), lb = b->linear_layers();
  for (size_t k = 0; k < la.size(); ++k) {
    EXPECT_TRUE(test::same_bytes(la[k].second->weight_mask.to(Device::cpu), lb[k].second->weight_mask.to(Device::cpu)));
    EXPECT_TRUE(test::same_bytes(la[k].second->weight.data().to(Device::cpu), lb[k].second->weight.data().to(Device::cpu)));
  }
}

}  // namespace
}  // namespace pt::prune
