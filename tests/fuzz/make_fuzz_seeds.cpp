// Writes the binary seed corpora of the fuzz harnesses: OUT/safetensors/ and OUT/checkpoint/. Valid files made by
// the project's own writers, every truncation step of them, and the hostile shapes the readers must refuse with one
// line: deep JSON nesting, zero and huge dimensions, non-UTF-8 and control bytes, overlapping offsets, lengths
// beyond the file. (The text corpora are committed under tests/fuzz/seeds/.)
//   make_fuzz_seeds OUT
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "nn/checkpoint.h"
#include "nn/safetensors.h"
#include "tensor/ops.h"

namespace fs = std::filesystem;
using namespace pt;

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write_file(const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; }

// Every `step`-th prefix of a valid file, and the file with one byte flipped at a few places.
void truncations(const fs::path& dir, const std::string& name, const std::string& bytes, size_t step) {
  for (size_t n = 0; n < bytes.size(); n += step) write_file(dir / (name + ".cut" + std::to_string(n)), bytes.substr(0, n));
  for (size_t at : {size_t(3), size_t(9), bytes.size() / 3, bytes.size() / 2, bytes.size() - 1}) {
    std::string flipped = bytes;
    flipped[at] = char(flipped[at] ^ 0x5a);
    write_file(dir / (name + ".flip" + std::to_string(at)), flipped);
  }
}

Tensor random(const Shape& shape, uint64_t seed, DType dtype = DType::f32) {
  Generator gen(seed);
  return Tensor::uniform(shape, -1.0, 1.0, gen).to(dtype);
}

// [8-byte length][header][data], written by hand.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
  return out + header + data;
}

void safetensors_seeds(const fs::path& dir) {
  fs::create_directories(dir);
  const fs::path valid = dir / "valid.safetensors";
  nn::write_safetensors(valid.string(),
                        {{"w.f32", random({3, 5}, 1)}, {"w.f16", random({7}, 2, DType::f16)},
                         {"w.bf16", random({2, 2}, 3, DType::bf16)}, {"ids", Tensor::from_vector<int64_t>({5, -3}, {2})},
                         {"mask", Tensor::from_vector<uint8_t>({1, 0, 1, 1}, {2, 2})}, {"empty", Tensor::empty({0, 3})},
                         {"scalar", Tensor::full({}, 2.5)}},
                        {{"format", "pt"}});
  truncations(dir, "valid", read_file(valid), 16);
  const std::string entry = R"("w":{"dtype":"F32","shape":SHAPE,"data_offsets":[0,0]})";
  auto with_shape = [&](const std::string& shape) {
    std::string e = entry;
    return "{" + e.replace(e.find("SHAPE"), 5, shape) + "}";
  };
  write_file(dir / "deep-shape-1000", safetensors_bytes(with_shape(std::string(1000, '[') + std::string(1000, ']')), ""));
  write_file(dir / "deep-shape-100000",
             safetensors_bytes(with_shape(std::string(100000, '[') + std::string(100000, ']')), ""));
  write_file(dir / "deep-open-braces", safetensors_bytes(std::string(5000, '{'), ""));
  write_file(dir / "zero-and-huge-dims", safetensors_bytes(with_shape("[0,4611686018427387904,4611686018427387904]"), ""));
  write_file(dir / "zero-dims", safetensors_bytes(with_shape("[0,0,0,0]"), ""));
  write_file(dir / "huge-dim", safetensors_bytes(R"({"w":{"dtype":"F64","shape":[18446744073709551615],"data_offsets":[0,8]}})", std::string(8, 'x')));
  write_file(dir / "non-utf8-key", safetensors_bytes("{\"\xff\xfe\":{}}", ""));
  write_file(dir / "newline-name",
             safetensors_bytes(R"({"a\nb":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(4, 'x')));
  write_file(dir / "overlap", safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", std::string(12, 'x')));
  std::string long_length = safetensors_bytes("{}", "");
  long_length[5] = '\x7f';
  write_file(dir / "length-beyond-file", long_length);
}

void checkpoint_seeds(const fs::path& dir) {
  fs::create_directories(dir);
  nn::Checkpoint c;
  c.parameters = {{"model.decoder.layers.0.fc1.weight", random({8, 4}, 11)},
                  {"model.decoder.layers.0.fc1.bias", random({8}, 12)},
                  {"lm_head.weight", random({6, 4}, 13)},
                  {"scalar", Tensor::full({}, 1.5)},
                  {"empty", Tensor::empty({0, 4})}};
  Tensor keep = Tensor::from_vector<uint8_t>(std::vector<uint8_t>(32, 1), {8, 4});
  for (int i = 0; i < 32; i += 3) keep.data<uint8_t>()[i] = 0;
  c.masks["model.decoder.layers.0.fc1.weight"] = keep;
  c.parameters[0].second = where(compare_scalar(keep, 0.0, CompareOp::ne), c.parameters[0].second,
                                 Tensor::zeros({8, 4}));
  nn::OptimizerState opt;
  opt.m["model.decoder.layers.0.fc1.bias"] = random({8}, 14);
  opt.v["model.decoder.layers.0.fc1.bias"] = abs(random({8}, 15));
  opt.step = 3;
  c.optimizer = opt;
  c.model_config = R"({"vocab_size": 6, "hidden_size": 4, "tie_word_embeddings": false})";
  c.run_config = "[run]\nseed = 0\n";
  c.stage = "retrain";
  c.metrics = R"({"history": [[1, 2.5, 0.001, 1.0]], "evals": []})";
  const std::vector<std::pair<std::string, nn::SaveOptions>> variants = {
      {"plain", {}}, {"fp16-gzip", {true, 6, true, false}}, {"sparse", {false, 0, true, true}}};
  for (const auto& [name, options] : variants) {
    const fs::path p = dir / (name + ".h5");
    nn::save_checkpoint(p.string(), c, options);
    truncations(dir, name, read_file(p), 512);
  }
  c.model_config = std::string(2000, '[') + std::string(2000, ']');  // valid JSON, absurdly nested
  nn::save_checkpoint((dir / "deep-model-config.h5").string(), c);
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_fuzz_seeds OUT_DIR\n");
    return 2;
  }
  safetensors_seeds(fs::path(argv[1]) / "safetensors");
  checkpoint_seeds(fs::path(argv[1]) / "checkpoint");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "make_fuzz_seeds: %s\n", e.what());
  return 1;
}
