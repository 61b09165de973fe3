// Bad input in the file formats a user hands over (a Hugging Face model folder: config.json, model.safetensors,
// the shard index), run through opt_eval as a user runs it. Each case must end with exit != 0 and exactly one
// line that names the file and the key or value at fault, and leave a pre-existing output folder (the token
// cache) byte-identical. Before, a deeply nested header killed the process (SIGSEGV), a raw non-UTF-8 byte was
// echoed, unsupported settings surfaced as a missing tensor, and some bad folders were evaluated.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace pt::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
const std::string kSource = pt::test::source_dir();
const std::string kOptEval = app_dir() + "/opt_eval";

void write_file(const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; }

// [8-byte little-endian header length][header][data]
std::string safetensors(const std::string& header, const std::string& data = "") {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
  return out + header + data;
}

std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    files[e.path().string()] = e.is_regular_file() ? read_text_file(e.path().string()) : "<folder>";
  return files;
}

struct Case {
  const char* name;
  std::function<void(const fs::path& model)> damage;  // applied to a copy of a valid model folder
  std::vector<std::string> needles;                   // what the one line must say
};

json config_of(const fs::path& model) { return json::parse(read_text_file((model / "config.json").string())); }
void set_config(const fs::path& model, const char* key, const json& value) {
  json c = config_of(model);
  c[key] = value;
  write_file(model / "config.json", c.dump(2));
}

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {"safetensors shape nested 100,000 deep",
       [](const fs::path& m) {
         write_file(m / "model.safetensors",
                    safetensors(R"({"w":{"dtype":"F32","shape":)" + std::string(100000, '[') + std::string(100000, ']') +
                                R"(,"data_offsets":[0,0]}})"));
       },
       {"model.safetensors: header: JSON nests deeper than 32 levels"}},
      {"safetensors shape [0, 2^62, 2^62]",
       [](const fs::path& m) {
         write_file(m / "model.safetensors",
                    safetensors(R"({"model.decoder.embed_tokens.weight":{"dtype":"F32",)"
                                R"("shape":[0,4611686018427387904,4611686018427387904],"data_offsets":[0,0]}})"));
       },
       {"model.safetensors: tensor model.decoder.embed_tokens.weight: shape [0,4611686018427387904,"
        "4611686018427387904] is too large"}},
      {"safetensors header with a non-UTF-8 byte",
       [](const fs::path& m) { write_file(m / "model.safetensors", safetensors("{\"w\xff\":{}}")); },
       {"model.safetensors: header: not valid JSON", "\\xff"}},
      {"config.json layer_norm_elementwise_affine = false",
       [](const fs::path& m) { set_config(m, "layer_norm_elementwise_affine", false); },
       {"config.json: layer_norm_elementwise_affine = false (layer norms without weight and bias) is not supported"}},
      {"config.json layerdrop = 0.2", [](const fs::path& m) { set_config(m, "layerdrop", 0.2); },
       {"config.json: layerdrop = 0.2 is not supported"}},
      {"config.json activation gelu", [](const fs::path& m) { set_config(m, "activation_function", "gelu"); },
       {"config.json: activation_function is \"gelu\" but OPT models here support only \"relu\""}},
      {"config.json nested 100,000 deep",
       [](const fs::path& m) {
         std::string text = config_of(m).dump();
         text.insert(text.size() - 1, ",\"x\":" + std::string(100000, '[') + std::string(100000, ']'));
         write_file(m / "config.json", text);
       },
       {"config.json: JSON nests deeper than 32 levels"}},
      {"config.json untied without lm_head.weight",
       [](const fs::path& m) { set_config(m, "tie_word_embeddings", false); },
       {"config.json has tie_word_embeddings = false but no lm_head.weight is stored"}},
      {"config.json is a folder",
       [](const fs::path& m) {
         fs::remove(m / "config.json");
         fs::create_directories(m / "config.json");
       },
       {"config.json: not a regular file"}},
      {"index.json names a shard outside the folder",
       [](const fs::path& m) {
         fs::remove(m / "model.safetensors");
         write_file(m / "model.safetensors.index.json",
                    R"({"weight_map":{"model.decoder.embed_tokens.weight":"../../etc/passwd"}})");
       },
       {"model.safetensors.index.json: weight_map entry for model.decoder.embed_tokens.weight is "
        "\"../../etc/passwd\", not the name of a file in the folder"}},
  };
  return all;
}

class BadInputFormats : public TempDirTest, public ::testing::WithParamInterface<size_t> {};

TEST_P(BadInputFormats, OneLineNamingTheFaultExitNonZeroOutputUntouched) {
  const Case& c = cases()[GetParam()];
  SCOPED_TRACE(c.name);
  const fs::path model = path("model"), cache = path("cache");
  fs::copy(kSource + "/tests/golden/opt/tiny", model);
  c.damage(model);
  fs::create_directories(cache / "sub");
  write_file(cache / "sub" / "ids.bin", "earlier results\n");
  const auto before = snapshot(cache);

  const std::string log = path("opt_eval.log");
  const int code = wait_exit(spawn_process({kOptEval, "--model", model.string(), "--ppl", "--device", "cpu", "--seqlen",
                                            "16", "--windows", "1", "--data", kSource + "/data", "--cache",
                                            cache.string()},
                                           log));
  const std::string out = read_text_file(log);
  EXPECT_NE(code, 0) << out;
  EXPECT_LT(code, 128) << "killed by signal " << code - 128 << "\n" << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_EQ(out.rfind("error: ", 0), 0u) << out;
  for (const auto& n : c.needles) EXPECT_NE(out.find(n), std::string::npos) << "missing: " << n << "\nin: " << out;
  EXPECT_EQ(out.find_first_of("\xff\xfe"), std::string::npos) << "raw bytes in the message";
  EXPECT_EQ(snapshot(cache), before);
}

INSTANTIATE_TEST_SUITE_P(Catalogue, BadInputFormats, ::testing::Range(size_t(0), cases().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           std::string n;  // the case's name, runs of other characters as one '_'
                           for (char ch : std::string(cases()[info.param].name))
                             if (std::isalnum(static_cast<unsigned char>(ch))) n += ch;
                             else if (!n.empty() && n.back() != '_') n += '_';
                           return n;
                         });

}  // namespace
}  // namespace pt::test
