// make_random_opt: writes a random OPT model as a Hugging Face folder (config.json, sharded safetensors with
// model.safetensors.index.json), one tensor at a time, so a model of any size is written with the memory of one
// shard. For tests and benchmarks of models larger than memory (README: "Models larger than memory").
//   make_random_opt --out /tmp/opt-1.4g --layers 24 --hidden 1024 --heads 16 --ffn 4096 --context 2048
//   make_random_opt --out /tmp/opt-66b-ish --layers 4 --hidden 9216 --heads 72 --ffn 36864 --dtype f16
// Weights ~ N(0, 0.02) as HF initialises OPT, LayerNorm gains in [0.5, 1.5] and biases in [-0.05, 0.05] (so input
// features differ in scale and SparseGPT / Wanda have something to exploit); every tensor is drawn from its own
// counter-based stream (seed, tensor index): the same arguments write the same bytes.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "nn/safetensors.h"
#include "opt/config.h"
#include "opt/hf_checkpoint.h"
#include "opt/model.h"
#include "tensor/random.h"

using namespace pt;
namespace fs = std::filesystem;

namespace {

// The value of one tensor, by what it is: LayerNorm gain, bias (or LayerNorm shift), or weight.
Tensor random_value(const std::string& name, const Shape& shape, uint64_t seed, uint64_t index, DType dtype) {
  Generator gen(random_bits(seed, index));
  const bool norm = name.find("layer_norm") != std::string::npos;
  const bool bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
  Tensor t = norm && !bias ? Tensor::uniform(shape, 0.5, 1.5, gen)
             : bias        ? Tensor::uniform(shape, -0.05, 0.05, gen)
                           : Tensor::normal(shape, 0.0, 0.02, gen);
  return t.to(dtype);
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App cli{"Write a random OPT model as a sharded Hugging Face safetensors folder"};
  std::string out, dtype_name = "f32";
  opt::OptConfig c;
  c.name = "random-opt";
  int64_t shard_mb = 500;
  uint64_t seed = 0;
  cli.add_option("--out", out, "folder to write (created; files in it are replaced)")->required();
  cli.add_option("--layers", c.num_hidden_layers, "decoder layers")->capture_default_str();
  cli.add_option("--hidden", c.hidden_size, "hidden size")->capture_default_str();
  cli.add_option("--heads", c.num_attention_heads, "attention heads")->capture_default_str();
  cli.add_option("--ffn", c.ffn_dim, "feed-forward size")->capture_default_str();
  cli.add_option("--context", c.max_position_embeddings, "context (positions)")->capture_default_str();
  cli.add_option("--vocab", c.vocab_size, "vocabulary size")->capture_default_str();
  cli.add_option("--dtype", dtype_name, "f32, f16 or bf16 (as stored)")->capture_default_str();
  cli.add_option("--shard-mb", shard_mb, "start a new shard after this many MB")->capture_default_str();
  cli.add_option("--seed", seed, "random seed")->capture_default_str();
  CLI11_PARSE(cli, argc, argv);
  c.word_embed_proj_dim = c.hidden_size;
  PT_CHECK(c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads == 0, "--heads ", c.num_attention_heads,
           " must divide --hidden ", c.hidden_size);
  c.validate();
  const DType dtype = dtype_name == "f16" ? DType::f16 : dtype_name == "bf16" ? DType::bf16 : DType::f32;
  PT_CHECK(dtype != DType::f32 || dtype_name == "f32", "--dtype ", dtype_name, ": allowed f32, f16, bf16");
  PT_CHECK(shard_mb >= 1, "--shard-mb ", shard_mb, " must be at least 1");

  // Names and shapes in Hugging Face's order (the ends, then the layers), from a model without layers and one layer.
  std::vector<std::pair<std::string, Shape>> tensors;
  {
    auto ends = opt::OptForCausalLM::without_layers(c, Device::cpu, DType::f32);
    for (auto& [name, p] : ends->named_parameters()) tensors.emplace_back(name, p->shape());
    const opt::DecoderLayer layer(c, Device::cpu, DType::f32, 0);
    for (int64_t i = 0; i < c.num_hidden_layers; ++i)
      for (auto& [name, p] : layer.named_parameters())
        tensors.emplace_back("model.decoder.layers." + std::to_string(i) + "." + name, p->shape());
  }

  fs::create_directories(out);
  const int64_t limit = shard_mb * 1000000;
  std::vector<std::vector<size_t>> shards(1);
  int64_t bytes = 0, total = 0;
  for (size_t k = 0; k < tensors.size(); ++k) {
    const int64_t n = shape_numel(tensors[k].second) * int64_t(dtype_size(dtype));
    if (bytes > 0 && bytes + n > limit) shards.emplace_back(), bytes = 0;
    shards.back().push_back(k);
    bytes += n;
    total += n;
  }
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", total}};
  index["weight_map"] = nlohmann::ordered_json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    char file[64];
    std::snprintf(file, sizeof file, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    std::vector<std::pair<std::string, Tensor>> values;
    for (size_t k : shards[s]) {
      values.emplace_back(tensors[k].first, random_value(tensors[k].first, tensors[k].second, seed, k, dtype));
      index["weight_map"][tensors[k].first] = file;
    }
    nn::write_safetensors(out + "/" + file, values, {{"format", "pt"}});
    std::fprintf(stderr, "wrote %s (%zu tensors)\n", file, values.size());
  }
  write_file_atomic(out + "/config.json", opt::hf_config_json(c) + "\n");
  write_file_atomic(out + "/model.safetensors.index.json", index.dump(2) + "\n");
  std::printf("%s: %s, %.3f GB in %zu shards\n", out.c_str(), c.describe().c_str(), double(total) / 1e9, shards.size());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
