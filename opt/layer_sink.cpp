#include "opt/layer_sink.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "tensor/error.h"

namespace pt::opt {

namespace fs = std::filesystem;

namespace {

constexpr const char* kIdentityKey = "pt_identity";
constexpr const char* kLayerKey = "pt_layer";
constexpr const char* kNotePrefix = "pt_note_";

// A layer's parameters under their full names, and the keep-masks of its Linear weights.
std::vector<std::pair<std::string, Tensor>> layer_tensors(int64_t i, DecoderLayer& layer) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [name, p] : layer.named_parameters()) out.emplace_back(layer_prefix(i) + name, p->data());
  return out;
}
std::map<std::string, Tensor> layer_masks(int64_t i, DecoderLayer& layer) {
  std::map<std::string, Tensor> out;
  for (auto& [name, lin] : layer.linear_layers())
    if (lin->has_mask()) out.emplace(layer_prefix(i) + name + ".weight", lin->weight_mask);
  return out;
}

// Decoder layer index of a parameter name, or -1.
int64_t layer_of(const std::string& name) {
  const std::string p = "model.decoder.layers.";
  if (name.rfind(p, 0) != 0) return -1;
  const size_t dot = name.find('.', p.size());
  if (dot == std::string::npos) return -1;
  try {
    return std::stoll(name.substr(p.size(), dot - p.size()));
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace

std::string HfShardSink::shard_name(int64_t shard, int64_t layers) {
  char name[64];
  std::snprintf(name, sizeof name, "model-%05lld-of-%05lld.safetensors", (long long)shard, (long long)(layers + 1));
  return name;
}

HfShardSink::HfShardSink(std::string dir, OptConfig config, std::string identity)
    : dir_(std::move(dir)), config_(std::move(config)), identity_(std::move(identity)) {
  fs::create_directories(dir_);
}

void HfShardSink::begin(OptForCausalLM& ends) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  const std::string file = shard_name(1, config_.num_hidden_layers);
  for (auto& [name, p] : ends.named_parameters()) {
    tensors.emplace_back(name, p->data());
    weight_map_[name] = file;
    total_bytes_ += p->data().nbytes();
  }
  nn::write_safetensors(dir_ + "/" + file, tensors, {{"format", "pt"}, {kIdentityKey, identity_}});
}

void HfShardSink::layer(int64_t i, DecoderLayer& layer, const LayerNotes& notes, bool resumed) {
  const std::string file = shard_name(i + 2, config_.num_hidden_layers);
  const auto tensors = layer_tensors(i, layer);
  for (const auto& [name, t] : tensors) {
    weight_map_[name] = file;
    total_bytes_ += t.nbytes();
  }
  if (resumed) return;  // its shard and masks are on disk already
  std::vector<std::pair<std::string, Tensor>> masks;
  for (auto& [name, m] : layer_masks(i, layer)) masks.emplace_back(name, m);
  // Masks first, shard second: a shard on disk means its layer is complete.
  nn::write_safetensors(dir_ + "/" + mask_file_name(i + 2), masks, {{kIdentityKey, identity_}});
  std::map<std::string, std::string> meta{{"format", "pt"}, {kIdentityKey, identity_}, {kLayerKey, std::to_string(i)}};
  for (const auto& [k, v] : notes) meta[kNotePrefix + k] = v;
  nn::write_safetensors(dir_ + "/" + file, tensors, meta);
}

void HfShardSink::end() {
  // config.json, then the index: an index means the folder is complete.
  write_file_atomic(dir_ + "/config.json", hf_config_json(config_) + "\n");
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", total_bytes_}};
  index["weight_map"] = nlohmann::ordered_json::object();
  for (const auto& [name, file] : weight_map_) index["weight_map"][name] = file;
  write_file_atomic(dir_ + "/model.safetensors.index.json", index.dump(2) + "\n");
}

std::map<int64_t, LayerNotes> HfShardSink::finished_layers(const std::string& dir, const OptConfig& config,
                                                           const std::string& identity) {
  std::map<int64_t, LayerNotes> out;
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    const std::string shard = dir + "/" + shard_name(i + 2, config.num_hidden_layers);
    if (!fs::exists(shard) || !fs::exists(dir + "/" + mask_file_name(i + 2))) break;
    const nn::SafetensorsFile file(shard);
    const auto& meta = file.metadata();
    const auto id = meta.find(kIdentityKey), layer = meta.find(kLayerKey);
    PT_CHECK(id != meta.end() && id->second == identity && layer != meta.end() && layer->second == std::to_string(i),
             "the layers in ", dir, " were written by another pass (", shard,
             " was made with other inputs); remove the folder to start the stage afresh");
    LayerNotes notes;
    for (const auto& [k, v] : meta)
      if (k.rfind(kNotePrefix, 0) == 0) notes[k.substr(std::string(kNotePrefix).size())] = v;
    out.emplace(i, std::move(notes));
  }
  return out;
}

void CheckpointSink::begin(OptForCausalLM& ends) {
  for (auto& [name, p] : ends.named_parameters()) writer_.add_parameter(name, p->data());
}

void CheckpointSink::layer(int64_t i, DecoderLayer& layer, const LayerNotes&, bool) {
  const auto masks = layer_masks(i, layer);
  for (const auto& [name, t] : layer_tensors(i, layer)) {
    const auto m = masks.find(name);
    writer_.add_parameter(name, t, m == masks.end() ? Tensor() : m->second);
  }
}

FinishedLayersSource::FinishedLayersSource(const std::string& dir, const std::map<int64_t, LayerNotes>& finished,
                                           std::shared_ptr<const WeightSource> rest)
    : rest_(std::move(rest)) {
  const int64_t layers = rest_->config().num_hidden_layers;
  for (const auto& [i, notes] : finished) {
    Files& f = layers_[i];
    f.shard = std::make_unique<nn::SafetensorsFile>(dir + "/" + HfShardSink::shard_name(i + 2, layers));
    f.masks = std::make_unique<nn::SafetensorsFile>(dir + "/" + mask_file_name(i + 2));
  }
}

const FinishedLayersSource::Files* FinishedLayersSource::files_of(const std::string& name) const {
  const auto it = layers_.find(layer_of(name));
  return it == layers_.end() ? nullptr : &it->second;
}

bool FinishedLayersSource::has(const std::string& name) const {
  const Files* f = files_of(name);
  return f ? f->shard->has(name) : rest_->has(name);
}

Tensor FinishedLayersSource::read_into(const std::string& name, const Tensor& dst) const {
  const Files* f = files_of(name);
  if (!f) return rest_->read_into(name, dst);
  f->shard->read_into(name, dst);
  return f->masks->has(name) ? f->masks->read(name, DType::u8) : Tensor();
}

}  // namespace pt::opt
