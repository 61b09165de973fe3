// Perplexity under SparseGPT's protocol against the value the golden script computed with Hugging Face
// transformers on the same model and token stream; batching must not change it; bad windows are errors.
#include <gtest/gtest.h>

#include <cmath>

#include "nn/safetensors.h"
#include "opt/hf_checkpoint.h"
#include "opt/model.h"
#include "opt/perplexity.h"
#include "tests/test_util.h"

namespace pt::opt {
namespace {

struct Golden {
  std::vector<int32_t> tokens;
  int64_t seqlen;
  double ppl;
};

Golden read_golden(const std::string& dir) {
  nn::SafetensorsFile io(dir + "/io.safetensors");
  Golden g;
  for (int64_t t : io.read("ppl_tokens", DType::i64).to_vector<int64_t>()) g.tokens.push_back(int32_t(t));
  g.seqlen = int64_t(io.read("ppl_seqlen", DType::i64).item());
  g.ppl = io.read("ppl_value", DType::f64).item();
  return g;
}

void check_model(const std::string& name, Device dev) {
  const std::string dir = pt::test::source_dir() + "/tests/golden/opt/" + name;
  HfCheckpoint ckpt(dir);
  OptForCausalLM model(ckpt.config(), dev, 0);
  model.load_hf(ckpt);
  Golden g = read_golden(dir);
  for (int64_t batch : {1, 2, 5}) {
    PerplexityOptions o;
    o.seqlen = g.seqlen;
    o.batch_size = batch;
    o.show_progress = false;
    PerplexityResult r = evaluate_perplexity(model, g.tokens, o);
    EXPECT_EQ(r.windows, int64_t(g.tokens.size()) / g.seqlen);  // the tail is dropped
    EXPECT_EQ(r.tokens_scored, r.windows * (g.seqlen - 1));
    EXPECT_NEAR(r.perplexity, g.ppl, 1e-5 * g.ppl) << name << " batch " << batch;
    EXPECT_NEAR(std::exp(r.mean_nll), r.perplexity, 1e-9 * r.perplexity);
  }
}

TEST(Perplexity, MatchesHuggingFaceOnGoldenModels) {
  check_model("tiny", Device::cpu);
  check_model("tiny-350m", Device::cpu);
}

TEST(Perplexity, RejectsWindowsTheModelCannotScore) {
  OptForCausalLM model(opt_preset("tiny"), Device::cpu, 0);
  std::vector<int32_t> tokens(200, 5);
  PerplexityOptions o;
  o.show_progress = false;
  o.seqlen = 65;  // tiny's context is 64
  test::expect_error([&] { evaluate_perplexity(model, tokens, o); }, "longer than the model's context 64");
  o.seqlen = 32;
  std::vector<int32_t> few(20, 5);
  test::expect_error([&] { evaluate_perplexity(model, few, o); }, "do not fill one window");
  o.source = "data/wiki.test.raw";  // too short a text is named, so the user knows which file to fix
  test::expect_error([&] { evaluate_perplexity(model, few, o); },
                     "20 tokens (the text data/wiki.test.raw) do not fill one window of 32");
  o.batch_size = 0;
  test::expect_error([&] { evaluate_perplexity(model, tokens, o); }, "batch_size");
}

TEST(CudaPerplexity, MatchesHuggingFaceOnGoldenModels) {
  PT_SKIP_IF_NO_CUDA();
  check_model("tiny", Device::cuda);
  check_model("tiny-350m", Device::cuda);
}

}  // namespace
}  // namespace pt::opt
