// Hugging Face OPT checkpoints: fake model folders (config.json + safetensors, single-file, sharded, with and
// without the "model." prefix, with and without lm_head) are built here and read back through HfCheckpoint.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nn/safetensors.h"
#include "opt/hf_checkpoint.h"
#include "opt/model.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using nlohmann::json;
using pt::DType;
using pt::Shape;
using pt::Tensor;
using pt::opt::HfCheckpoint;
using pt::opt::opt_preset;
using pt::opt::OptConfig;
using pt::opt::opt_preset_names;
using pt::opt::parse_hf_config;
using pt::opt::hf_config_json;
using pt::test::expect_error;
using Named = std::vector<std::pair<std::string, Tensor>>;

namespace {

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "message: " << (text) << "\nmissing: " << (part)

// Canonical HF names and shapes of an OPT model (without the tied lm_head), from the module structure.
std::vector<std::pair<std::string, Shape>> opt_state_shapes(const OptConfig& c) {
  const int64_t h = c.hidden_size, f = c.ffn_dim, e = c.word_embed_proj_dim;
  const std::string d = "model.decoder.";
  std::vector<std::pair<std::string, Shape>> out = {{d + "embed_tokens.weight", {c.vocab_size, e}},
                                                    {d + "embed_positions.weight", {c.max_position_embeddings + 2, h}}};
  if (c.has_projections()) {
    out.push_back({d + "project_in.weight", {h, e}});
    out.push_back({d + "project_out.weight", {e, h}});
  }
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string l = d + "layers." + std::to_string(i) + ".";
    for (const char* p : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      out.push_back({l + "self_attn." + p + ".weight", {h, h}});
      out.push_back({l + "self_attn." + p + ".bias", {h}});
    }
    for (const char* ln : {"self_attn_layer_norm", "final_layer_norm"}) {
      out.push_back({l + ln + ".weight", {h}});
      out.push_back({l + ln + ".bias", {h}});
    }
    out.push_back({l + "fc1.weight", {f, h}});
    out.push_back({l + "fc1.bias", {f}});
    out.push_back({l + "fc2.weight", {h, f}});
    out.push_back({l + "fc2.bias", {h}});
  }
  if (c.has_final_layer_norm()) {
    out.push_back({d + "final_layer_norm.weight", {h}});
    out.push_back({d + "final_layer_norm.bias", {h}});
  }
  return out;
}

// Random weights for every canonical name (fp16 like the published checkpoints, unless told otherwise).
Named random_weights(const OptConfig& c, DType dtype = DType::f16) {
  Named out;
  uint64_t seed = 100;
  for (auto& [name, shape] : opt_state_shapes(c))
    out.emplace_back(name, pt::test::random_tensor(shape, seed++, -1, 1, dtype));
  return out;
}

// A config.json as transformers writes it for OPT.
json transformers_config_json(const OptConfig& c) {
  return {{"_name_or_path", "test/" + c.name},
          {"activation_function", "relu"},
          {"architectures", {"OPTForCausalLM"}},
          {"model_type", "opt"},
          {"torch_dtype", "float16"},
          {"vocab_size", c.vocab_size},
          {"hidden_size", c.hidden_size},
          {"num_hidden_layers", c.num_hidden_layers},
          {"ffn_dim", c.ffn_dim},
          {"num_attention_heads", c.num_attention_heads},
          {"max_position_embeddings", c.max_position_embeddings},
          {"word_embed_proj_dim", c.word_embed_proj_dim},
          {"do_layer_norm_before", c.do_layer_norm_before},
          {"dropout", 0.1},
          {"attention_dropout", 0.0},
          {"init_std", 0.02},
          {"layerdrop", 0.0},
          {"pad_token_id", 1},
          {"bos_token_id", 2},
          {"eos_token_id", 2},
          {"enable_bias", true},
          {"use_cache", true}};
}

void write_text(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

// Stored names as a checkpoint would hold them: "decoder.…" when the prefix is stripped.
Named with_prefix_stripped(const Named& w) {
  Named out;
  for (auto& [n, t] : w) out.emplace_back(n.substr(std::string("model.").size()), t);
  return out;
}

class HfCheckpointTest : public pt::test::TempDirTest {
 protected:
  // A model folder with config.json and a single model.safetensors.
  std::string make_folder(const std::string& name, const json& config, const Named& stored) {
    fs::path d = dir_ / name;
    fs::create_directories(d);
    write_text(d / "config.json", config.dump(2));
    pt::nn::write_safetensors((d / "model.safetensors").string(), stored, {{"format", "pt"}});
    return d.string();
  }
};

void expect_reads_back(const HfCheckpoint& ck, const Named& weights) {
  for (auto& [name, t] : weights) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(ck.has(name));
    EXPECT_EQ(ck.info(name).shape, t.shape());
    EXPECT_TRUE(pt::test::tensors_equal(ck.read(name, DType::f32), t.to(DType::f32)));
    Tensor dst = Tensor::zeros(t.shape(), t.dtype());
    ck.read_into(name, dst);
    EXPECT_TRUE(pt::test::tensors_equal(dst, t));
  }
}

std::vector<std::string> expected_names(const OptConfig& c) {
  std::vector<std::string> names = {"lm_head.weight"};
  for (auto& [n, s] : opt_state_shapes(c)) names.push_back(n);
  std::sort(names.begin(), names.end());
  return names;
}

TEST_F(HfCheckpointTest, SingleFileConfigAndEveryTensor) {
  const OptConfig tiny = opt_preset("tiny");
  const Named w = random_weights(tiny);
  HfCheckpoint ck(make_folder("tiny", transformers_config_json(tiny), w));
  EXPECT_TRUE(ck.config().same_architecture(tiny));
  EXPECT_EQ(ck.config().name, "test/opt-tiny");
  EXPECT_DOUBLE_EQ(ck.config().dropout, 0.1);
  EXPECT_EQ(ck.config().bos_token_id, 2);
  EXPECT_NO_THROW(ck.check_matches(tiny));
  EXPECT_EQ(ck.canonical_names(), expected_names(tiny));
  EXPECT_EQ(ck.info("model.decoder.layers.1.fc1.weight").dtype, DType::f16);
  expect_reads_back(ck, w);
  // The tied head comes from the embedding.
  EXPECT_TRUE(pt::test::tensors_equal(ck.read("lm_head.weight", DType::f32), w[0].second.to(DType::f32)));
  EXPECT_THROW(ck.read("model.decoder.layers.2.fc1.weight", DType::f32), pt::Error);
}

TEST_F(HfCheckpointTest, ShardedCheckpointWithIndex) {
  const OptConfig tiny = opt_preset("tiny");
  const Named w = random_weights(tiny, DType::f32);
  const fs::path d = dir_ / "sharded";
  fs::create_directories(d);
  write_text(d / "config.json", transformers_config_json(tiny).dump());
  Named shard[2];
  json weight_map = json::object();
  for (size_t i = 0; i < w.size(); ++i) {
    const int s = i < w.size() / 2 ? 0 : 1;
    shard[s].push_back(w[i]);
    weight_map[w[i].first] = "model-0000" + std::to_string(s + 1) + "-of-00002.safetensors";
  }
  pt::nn::write_safetensors((d / "model-00001-of-00002.safetensors").string(), shard[0]);
  pt::nn::write_safetensors((d / "model-00002-of-00002.safetensors").string(), shard[1]);
  write_text(d / "model.safetensors.index.json",
             json{{"metadata", {{"total_size", 1}}}, {"weight_map", weight_map}}.dump());
  HfCheckpoint ck(d.string());
  EXPECT_EQ(ck.canonical_names(), expected_names(tiny));
  expect_reads_back(ck, w);

  // A shard named in the index but absent from the folder is a clear error.
  fs::remove(d / "model-00002-of-00002.safetensors");
  try {
    HfCheckpoint bad(d.string());
    ADD_FAILURE() << "missing shard accepted";
  } catch (const pt::Error& e) {
    EXPECT_CONTAINS(e.what(), "model-00002-of-00002.safetensors");
    EXPECT_CONTAINS(e.what(), "is missing");
  }
}

TEST_F(HfCheckpointTest, StrippedPrefixAsInOpt350m) {
  const OptConfig c = opt_preset("tiny-350m");  // post-LN, projections, no final layer norm
  const Named w = random_weights(c);
  json config = transformers_config_json(c);
  config.erase("enable_bias");  // defaults apply to keys older configs lack
  HfCheckpoint ck(make_folder("350m", config, with_prefix_stripped(w)));
  EXPECT_TRUE(ck.config().same_architecture(c));
  EXPECT_FALSE(ck.has("model.decoder.final_layer_norm.weight"));
  EXPECT_TRUE(ck.has("model.decoder.project_in.weight"));
  EXPECT_EQ(ck.canonical_names(), expected_names(c));
  expect_reads_back(ck, w);
  EXPECT_EQ(pt::opt::canonical_opt_name("layers.3.fc1.bias"), "model.decoder.layers.3.fc1.bias");
  EXPECT_EQ(pt::opt::canonical_opt_name("model.decoder.embed_tokens.weight"), "model.decoder.embed_tokens.weight");
}

TEST_F(HfCheckpointTest, StoredLmHeadIsUsedAndMustMatchTheEmbedding) {
  const OptConfig tiny = opt_preset("tiny");
  Named w = random_weights(tiny);
  const Tensor head = pt::test::random_tensor({tiny.vocab_size, tiny.hidden_size}, 7, -1, 1, DType::f16);
  w.emplace_back("lm_head.weight", head);
  HfCheckpoint ck(make_folder("head", transformers_config_json(tiny), w));
  EXPECT_EQ(ck.canonical_names(), expected_names(tiny));
  EXPECT_TRUE(pt::test::tensors_equal(ck.read("lm_head.weight", DType::f16), head));

  w.back().second = pt::test::random_tensor({tiny.vocab_size, 8}, 8, -1, 1, DType::f16);
  try {
    HfCheckpoint bad(make_folder("bad_head", transformers_config_json(tiny), w));
    ADD_FAILURE() << "lm_head of the wrong shape accepted";
  } catch (const pt::Error& e) {
    EXPECT_CONTAINS(e.what(), "lm_head.weight has shape [512, 8] but model.decoder.embed_tokens.weight has [512, 64]");
  }
  // Two stored names for one canonical tensor are ambiguous.
  Named twice = random_weights(tiny);
  twice.emplace_back("decoder.layers.0.fc1.bias", twice.back().second);
  EXPECT_THROW(HfCheckpoint(make_folder("twice", transformers_config_json(tiny), twice)), pt::Error);
}

// tie_word_embeddings as transformers reads it: false needs a stored lm_head.weight and gives an untied model; a tied
// config whose files store a different head is untied too (transformers 5 warns and keeps both), an identical
// stored head stays tied.
TEST_F(HfCheckpointTest, UntiedHeadIsReadAsTransformersReadsIt) {
  const OptConfig tiny = opt_preset("tiny");
  const Named w = random_weights(tiny);
  ASSERT_EQ(w[0].first, "model.decoder.embed_tokens.weight");
  const Tensor head = pt::test::random_tensor({tiny.vocab_size, tiny.hidden_size}, 9, -1, 1, DType::f16);
  Named with_head = w;
  with_head.emplace_back("lm_head.weight", head);
  json untied = transformers_config_json(tiny);
  untied["tie_word_embeddings"] = false;
  expect_error([&] { HfCheckpoint(make_folder("no_head", untied, w)); },
               "config.json has tie_word_embeddings = false but no lm_head.weight is stored");

  for (const char* folder : {"untied", "tied_but_different"}) {
    SCOPED_TRACE(folder);
    HfCheckpoint ck(make_folder(folder, folder == std::string("untied") ? untied : transformers_config_json(tiny),
                                with_head));
    EXPECT_FALSE(ck.config().tie_word_embeddings);
    EXPECT_TRUE(pt::test::tensors_equal(ck.read("lm_head.weight", DType::f16), head));
    auto model = pt::opt::OptForCausalLM::from_hf(ck, pt::Device::cpu);
    EXPECT_FALSE(model->lm_head_tied());
    EXPECT_TRUE(pt::test::tensors_equal(model->lm_head->weight.data(), head.to(DType::f32)));
    EXPECT_TRUE(pt::test::tensors_equal(model->embed_tokens.weight.data(), w[0].second.to(DType::f32)));
    EXPECT_EQ(model->num_parameters(), ck.config().num_parameters());
    EXPECT_EQ(model->num_parameters(), opt_preset("tiny").num_parameters() + tiny.vocab_size * tiny.hidden_size);
  }
  Named same = w;
  same.emplace_back("lm_head.weight", w[0].second);
  HfCheckpoint tied(make_folder("tied_same", transformers_config_json(tiny), same));
  EXPECT_TRUE(tied.config().tie_word_embeddings);
  EXPECT_TRUE(pt::opt::OptForCausalLM::from_hf(tied, pt::Device::cpu)->lm_head_tied());
}

// config.json settings this model cannot honour are refused by name, not as a missing tensor later.
TEST_F(HfCheckpointTest, SettingsTheModelCannotHonourAreNamed) {
  const OptConfig tiny = opt_preset("tiny");
  Named no_layer_norms;  // what a model without affine layer norms stores
  for (auto& [n, t] : random_weights(tiny))
    if (n.find("layer_norm.") == std::string::npos) no_layer_norms.emplace_back(n, t);
  json affine = transformers_config_json(tiny);
  affine["layer_norm_elementwise_affine"] = false;
  expect_error([&] { HfCheckpoint(make_folder("affine", affine, no_layer_norms)); },
               "config.json: layer_norm_elementwise_affine = false (layer norms without weight and bias) is not "
               "supported");
  json layerdrop = transformers_config_json(tiny);
  layerdrop["layerdrop"] = 0.1;
  expect_error([&] { HfCheckpoint(make_folder("layerdrop", layerdrop, random_weights(tiny))); },
               "config.json: layerdrop = 0.1 is not supported");
  json relu6 = transformers_config_json(tiny);
  relu6["activation_function"] = "relu6";
  expect_error([&] { HfCheckpoint(make_folder("relu6", relu6, random_weights(tiny))); },
               "activation_function is \"relu6\" but OPT models here support only \"relu\"");
  // Nested 100,000 deep: one line, no crash (printing such a value in an error recursed once per level).
  json deep = transformers_config_json(tiny);
  std::string text = deep.dump();
  text.insert(text.size() - 1, ",\"task_specific_params\":" + std::string(100000, '[') + std::string(100000, ']'));
  const fs::path d = dir_ / "deep";
  fs::create_directories(d);
  write_text(d / "config.json", text);
  expect_error([&] { HfCheckpoint ck(d.string()); }, "config.json: JSON nests deeper than 32 levels");
  expect_error([&] { parse_hf_config("{\"vocab_size\": " + std::string(50, '[') + std::string(50, ']') + "}", "x"); },
               "HF config x: JSON nests deeper");
}

// Sizes from a config.json are bounded one by one and together (found by fuzzing: hidden_size 2^62 made the
// parameter count overflow int64, undefined behaviour, and the config was accepted).
TEST(HfConfigSizes, HugeSizesAreRefusedNotOverflowed) {
  json c = transformers_config_json(opt_preset("tiny"));
  c["hidden_size"] = int64_t(1) << 62;
  c["num_attention_heads"] = 1;
  expect_error([&] { parse_hf_config(c.dump(), "huge"); },
               "OPT config test/opt-tiny: hidden_size = 4611686018427387904 must be in [1, 2147483648]");
  for (const char* key : {"vocab_size", "hidden_size", "ffn_dim", "num_hidden_layers", "word_embed_proj_dim"})
    c[key] = int64_t(1) << 31;
  expect_error([&] { parse_hf_config(c.dump(), "huge"); }, "the parameter count overflows a 64-bit integer");
  // Large but countable: 8·h² dominates with h = 2^29 (the formula itself is checked against real models in
  // OptModel.ParameterNamesAreHuggingFaceNames).
  c["hidden_size"] = int64_t(1) << 29;
  c["num_hidden_layers"] = 2;
  c["ffn_dim"] = 4;
  c["vocab_size"] = 8;
  c["word_embed_proj_dim"] = 4;
  EXPECT_GT(parse_hf_config(c.dump(), "large").num_parameters(), int64_t(1) << 61);
}

TEST_F(HfCheckpointTest, CheckMatchesNamesTheFirstDifferingField) {
  const OptConfig tiny = opt_preset("tiny");
  HfCheckpoint ck(make_folder("tiny", transformers_config_json(tiny), random_weights(tiny)));
  auto mismatch = [&](const OptConfig& preset) -> std::string {
    try {
      ck.check_matches(preset);
    } catch (const pt::Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_CONTAINS(mismatch(opt_preset("125m")), "config.json has vocab_size=512 but preset opt-125m has 50272");
  EXPECT_CONTAINS(mismatch(opt_preset("125m")), "checkpoint " + (dir_ / "tiny").string());
  OptConfig deeper = tiny;
  deeper.name = "opt-tiny-3";
  deeper.num_hidden_layers = 3;
  EXPECT_CONTAINS(mismatch(deeper), "config.json has num_hidden_layers=2 but preset opt-tiny-3 has 3");
  EXPECT_CONTAINS(mismatch(opt_preset("tiny-350m")), "word_embed_proj_dim=64 but preset opt-tiny-350m has 32");
  OptConfig no_bias = tiny;
  no_bias.enable_bias = false;
  EXPECT_CONTAINS(mismatch(no_bias), "enable_bias=true but preset opt-tiny has false");
  OptConfig other_dropout = tiny;
  other_dropout.dropout = 0.0;  // not architecture
  EXPECT_NO_THROW(ck.check_matches(other_dropout));
}

TEST_F(HfCheckpointTest, ConfigAndFolderErrorsAreClear) {
  const OptConfig tiny = opt_preset("tiny");
  const Named w = random_weights(tiny);
  auto open_error = [](const std::string& dir) -> std::string {
    try {
      HfCheckpoint ck(dir);
    } catch (const pt::Error& e) {
      return e.what();
    }
    return "";
  };
  const std::string good = make_folder("good", transformers_config_json(tiny), w);
  fs::remove(fs::path(good) / "config.json");
  EXPECT_CONTAINS(open_error(good), "checkpoint " + good + ": missing config.json");
  EXPECT_CONTAINS(open_error((dir_ / "nowhere").string()), "no such folder");

  json gelu = transformers_config_json(tiny);
  gelu["activation_function"] = "gelu";
  std::string msg = open_error(make_folder("gelu", gelu, w));
  EXPECT_CONTAINS(msg, (dir_ / "gelu" / "config.json").string());
  EXPECT_CONTAINS(msg, "activation_function is \"gelu\"");

  json missing = transformers_config_json(tiny);
  missing.erase("ffn_dim");
  EXPECT_CONTAINS(open_error(make_folder("missing", missing, w)), "config.json: missing key \"ffn_dim\"");
  json typed = transformers_config_json(tiny);
  typed["hidden_size"] = "64";
  EXPECT_CONTAINS(open_error(make_folder("typed", typed, w)), "key \"hidden_size\" must be an integer, found \"64\"");
  json flag = transformers_config_json(tiny);
  flag["do_layer_norm_before"] = 1;
  EXPECT_CONTAINS(open_error(make_folder("flag", flag, w)), "key \"do_layer_norm_before\" must be true or false");
  json heads = transformers_config_json(tiny);
  heads["num_attention_heads"] = 5;
  EXPECT_CONTAINS(open_error(make_folder("heads", heads, w)), "not divisible by num_attention_heads 5");
  const fs::path broken = dir_ / "broken";
  fs::create_directories(broken);
  write_text(broken / "config.json", "{\"vocab_size\": 5");
  EXPECT_CONTAINS(open_error(broken.string()), "config.json: not valid JSON");

  // No weights: the message names both expected files and points at the converter when .bin files exist.
  const fs::path bin = dir_ / "bin";
  fs::create_directories(bin);
  write_text(bin / "config.json", transformers_config_json(tiny).dump());
  write_text(bin / "pytorch_model.bin", "not really");
  msg = open_error(bin.string());
  EXPECT_CONTAINS(msg, (bin / "model.safetensors").string());
  EXPECT_CONTAINS(msg, "convert_bin_to_safetensors.py");

  // read_into names the canonical tensor and both shapes.
  HfCheckpoint ck(make_folder("shape", transformers_config_json(tiny), w));
  try {
    ck.read_into("model.decoder.layers.0.fc1.weight", Tensor::zeros({64, 256}));
    ADD_FAILURE() << "shape mismatch accepted";
  } catch (const pt::Error& e) {
    EXPECT_CONTAINS(e.what(),
                    "tensor model.decoder.layers.0.fc1.weight: expected shape [64, 256] but the file has [256, 64]");
  }
}

// The config.json the project writes (checkpoints, HF export) reads back to the same architecture, both
// through the project's reader and as transformers' own fixture-style keys expect.
TEST(HfConfigJson, RoundTripsEveryPreset) {
  for (const std::string& name : opt_preset_names()) {
    OptConfig c = opt_preset(name);
    c.dropout = 0.05;
    const OptConfig back = parse_hf_config(hf_config_json(c), "round trip");
    EXPECT_TRUE(back.same_architecture(c)) << name;
    EXPECT_EQ(back.name, c.name);
    EXPECT_DOUBLE_EQ(back.dropout, 0.05);
    const json j = json::parse(hf_config_json(c));
    const json ref = transformers_config_json(c);
    for (const char* key : {"vocab_size", "hidden_size", "num_hidden_layers", "ffn_dim", "num_attention_heads",
                            "max_position_embeddings", "word_embed_proj_dim", "do_layer_norm_before", "model_type"})
      EXPECT_EQ(j.at(key), ref.at(key)) << name << " " << key;
  }
  expect_error([] { parse_hf_config("{not json", "x"); }, "HF config x: not valid JSON");
}

}  // namespace
