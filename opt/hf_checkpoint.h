// Hugging Face OPT checkpoints: config.json -> OptConfig, and the weights of a model folder (one
// model.safetensors, or shards listed by model.safetensors.index.json) under canonical HF names.
// Canonical names are the ones transformers' OPTForCausalLM uses: "model.decoder.…" and "lm_head.weight".
// Published files disagree on the prefix (opt-350m stores "decoder.…"), and usually omit the tied lm_head,
// so both prefixes are accepted and lm_head.weight is served from the token embedding when the head is tied.
// The head is untied (config().tie_word_embeddings = false, lm_head.weight read from the files) when config.json
// says tie_word_embeddings = false, or when the files store an lm_head.weight that differs from the embedding
// (transformers keeps both then).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nn/safetensors.h"
#include "opt/config.h"
#include "tensor/tensor.h"

namespace pt::opt {

// Reads an HF OPT config.json. Errors name the file and the key (missing, wrong type, or an activation
// other than relu). The config's name is "_name_or_path" when present, else the folder's name.
OptConfig read_hf_config(const std::string& config_json_path);
// The same from JSON text (e.g. a checkpoint's model_config attribute); `where` names it in errors.
OptConfig parse_hf_config(const std::string& json_text, const std::string& where);
// config.json text for a config (what transformers' OPTConfig reads back), tie_word_embeddings included (false
// for a model whose lm_head was untied: its checkpoint then stores lm_head.weight). The second form overrides it.
std::string hf_config_json(const OptConfig& config);
std::string hf_config_json(const OptConfig& config, bool tie_word_embeddings);

// "decoder.layers.0.fc1.weight" / "layers.0.fc1.weight" -> "model.decoder.layers.0.fc1.weight";
// names already canonical (or unknown) come back unchanged.
std::string canonical_opt_name(const std::string& stored_name);

class HfCheckpoint {
 public:
  HfCheckpoint() = default;
  explicit HfCheckpoint(const std::string& dir) { open(dir); }

  // Reads DIR/config.json and opens the weights (each shard opened once and validated).
  void open(const std::string& dir);
  const std::string& dir() const { return dir_; }
  const OptConfig& config() const { return config_; }

  std::vector<std::string> canonical_names() const;  // sorted; includes lm_head.weight
  bool has(const std::string& canonical) const { return sources_.count(canonical) != 0; }
  nn::SafetensorsInfo info(const std::string& canonical) const;
  // Converts the stored tensor into dst (checks the shape; see SafetensorsFile::read_into).
  void read_into(const std::string& canonical, const Tensor& dst) const;
  Tensor read(const std::string& canonical, DType dtype, Device device = Device::cpu) const;

  // Throws when config.json describes another architecture than `preset`, naming the first differing field:
  // "checkpoint DIR: config.json has num_hidden_layers=24 but preset opt-125m has 12".
  void check_matches(const OptConfig& preset) const;

 private:
  struct Source {
    size_t file = 0;          // index into files_
    std::string stored_name;  // the name inside that file
  };
  const Source& source(const std::string& canonical) const;
  void resolve_lm_head();  // after every file is open (see the comment at the top)

  std::string dir_;
  OptConfig config_;
  std::vector<std::unique_ptr<nn::SafetensorsFile>> files_;
  std::map<std::string, Source> sources_;  // canonical name -> where it is stored
};

}  // namespace pt::opt
