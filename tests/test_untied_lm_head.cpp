// An untied LM head everywhere. A model untied by the lm_head retraining scope keeps its own head through an HDF5
// checkpoint (whose model_config says tie_word_embeddings: false, so the model built from it is untied) and through
// the Hugging Face export (config.json + lm_head.weight), which the HF importer reads back with the same logits.
// Before, the import rebuilt the head from the embedding and evaluated another model without a word.
// (Parity with transformers on an untied model: OptModel.MatchesHuggingFaceTinyUntiedHead.)
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "autograd/functions.h"
#include "nn/checkpoint.h"
#include "nn/safetensors.h"
#include "opt/hf_checkpoint.h"
#include "opt/model.h"
#include "train/scopes.h"
#include "train/trainer.h"
#include "tests/test_util.h"

namespace pt::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A tiny model whose head has been retrained away from the embedding, as after an lm_head-scope stage.
std::unique_ptr<opt::OptForCausalLM> model_with_own_head() {
  auto m = std::make_unique<opt::OptForCausalLM>(opt::opt_preset("tiny"), Device::cpu, 5);
  train::prepare_scope(*m, train::RetrainScope::lm_head);
  m->lm_head->weight.data().copy_(random_tensor(m->lm_head->weight.shape(), 77, -0.1, 0.1));
  train::finish_scope(*m, train::RetrainScope::lm_head);
  m->eval();
  return m;
}

Tensor logits(opt::OptForCausalLM& model) {
  autograd::NoGradGuard no_grad;
  return model.forward(Tensor::from_vector<int64_t>({2, 45, 7, 300, 11, 9, 81, 5, 64, 33, 500, 1}, {2, 6})).data();
}

TEST(UntiedLmHead, UntyingShowsInTheConfigAndAnUntiedConfigBuildsItsOwnHead) {
  const opt::OptConfig tiny = opt::opt_preset("tiny");
  opt::OptForCausalLM m(tiny, Device::cpu, 1);
  m.untie_lm_head();
  EXPECT_EQ(json::parse(opt::hf_config_json(m.config())).at("tie_word_embeddings"), false);
  EXPECT_EQ(m.num_parameters(), m.config().num_parameters());
  EXPECT_EQ(m.num_parameters(), tiny.num_parameters() + tiny.vocab_size * tiny.word_embed_proj_dim);

  // Built from an untied config: its head is a parameter of its own, registered last (HF's order), randomly
  // initialised, and every other parameter is what the tied model with the same seed gets.
  const opt::OptConfig untied = opt::parse_hf_config(opt::hf_config_json(tiny, false), "untied tiny");
  opt::OptForCausalLM u(untied, Device::cpu, 1), t(tiny, Device::cpu, 1);
  ASSERT_FALSE(u.lm_head_tied());
  EXPECT_EQ(u.named_parameters().back().first, "lm_head.weight");
  EXPECT_FALSE(same_bytes(u.lm_head->weight.data(), u.embed_tokens.weight.data()));
  std::map<std::string, Tensor> tied_params;
  for (auto& [name, p] : t.named_parameters()) tied_params[name] = p->data();
  for (auto& [name, p] : u.named_parameters())
    if (name != "lm_head.weight") {
      EXPECT_TRUE(same_bytes(p->data(), tied_params.at(name))) << name;
    }
}

class UntiedLmHeadFiles : public TempDirTest {};

// What the apps do with an .h5 given as [model] weights (and with a stage checkpoint): build the model its
// model_config describes, then load the tensors.
TEST_F(UntiedLmHeadFiles, HdfCheckpointRebuildsTheUntiedModel) {
  auto m = model_with_own_head();
  nn::save_checkpoint(path("m.h5"), train::model_checkpoint(*m));
  nn::LoadOptions lo;
  lo.load_optimizer = false;
  const nn::Checkpoint back = nn::load_checkpoint(path("m.h5"), lo);
  EXPECT_EQ(json::parse(back.model_config).at("tie_word_embeddings"), false);
  opt::OptForCausalLM rebuilt(opt::parse_hf_config(back.model_config, "m.h5"), Device::cpu, 9);
  train::load_model_checkpoint(rebuilt, back);
  rebuilt.eval();
  EXPECT_TRUE(tensors_equal(logits(rebuilt), logits(*m)));
}

// What --export-hf writes (every parameter under its HF name, config.json for the model), read back the way
// opt_eval reads an HF folder.
TEST_F(UntiedLmHeadFiles, HuggingFaceExportReadsBackAsTheSameModel) {
  auto m = model_with_own_head();
  fs::create_directories(path("export"));
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& [name, var] : m->named_parameters()) tensors.emplace_back(name, var->data());
  nn::write_safetensors(path("export/model.safetensors"), tensors, {{"format", "pt"}});
  std::ofstream(path("export/config.json")) << opt::hf_config_json(m->config(), m->lm_head_tied());
  EXPECT_EQ(json::parse(read_text_file(path("export/config.json"))).at("tie_word_embeddings"), false);

  auto back = opt::OptForCausalLM::from_hf(opt::HfCheckpoint(path("export")), Device::cpu);
  ASSERT_FALSE(back->lm_head_tied());
  EXPECT_TRUE(same_bytes(back->lm_head->weight.data(), m->lm_head->weight.data()));
  EXPECT_TRUE(tensors_equal(logits(*back), logits(*m)));
}

}  // namespace
}  // namespace pt::test
