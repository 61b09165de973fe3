// Where a streamed pass writes the layers it finished, each as soon as it is finished (then it is freed):
//   HfShardSink      a Hugging Face folder, one safetensors shard per decoder layer plus one for the ends, each
//                    written atomically as its layer finishes, with the layer's keep-masks beside it
//                    (masks-NNNNN.safetensors, which transformers ignores); model.safetensors.index.json and
//                    config.json last. The shards are the durable record of a pass: an interrupted pass resumes
//                    at the first layer without one (finished_layers, FinishedLayersSource).
//   CheckpointSink   this project's HDF5 checkpoint, appended to as layers finish, put in place by commit().
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nn/checkpoint_stream.h"
#include "nn/safetensors.h"
#include "opt/model_layers.h"
#include "opt/weight_source.h"

namespace pt::opt {

class LayerSink {
 public:
  virtual ~LayerSink() = default;
  virtual void begin(OptForCausalLM& ends) = 0;  // the ends (every parameter of a model without layers), first
  // Decoder layer i, finished. resumed: an earlier pass already wrote it (durable sinks skip it).
  virtual void layer(int64_t i, DecoderLayer& layer, const LayerNotes& notes, bool resumed) = 0;
  virtual void end() = 0;  // after the last layer
};

class HfShardSink : public LayerSink {
 public:
  // `identity` is stamped into every shard: a resumed pass reuses only shards made by the very same pass.
  HfShardSink(std::string dir, OptConfig config, std::string identity);
  void begin(OptForCausalLM& ends) override;
  void layer(int64_t i, DecoderLayer& layer, const LayerNotes& notes, bool resumed) override;
  void end() override;

  // "model-00003-of-00026.safetensors": shard 1 holds the ends, shard i + 2 decoder layer i.
  static std::string shard_name(int64_t shard, int64_t layers);
  // The layers an interrupted pass finished in `dir` (shard and masks present), with their notes: the leading run
  // of layers 0, 1, ... that have both. A shard stamped with another identity is an error naming the folder.
  static std::map<int64_t, LayerNotes> finished_layers(const std::string& dir, const OptConfig& config,
                                                       const std::string& identity);

 private:
  std::string dir_;
  OptConfig config_;
  std::string identity_;
  std::map<std::string, std::string> weight_map_;  // parameter -> shard file
  int64_t total_bytes_ = 0;
};

class CheckpointSink : public LayerSink {
 public:
  CheckpointSink(const std::string& path, const nn::SaveOptions& options) : writer_(path, options) {}
  void begin(OptForCausalLM& ends) override;
  void layer(int64_t i, DecoderLayer& layer, const LayerNotes& notes, bool resumed) override;
  void end() override {}
  // Root attributes (configs, metrics), then the file is put in place (see nn::CheckpointWriter::commit).
  nn::SaveReport commit(const nn::Checkpoint& attributes) { return writer_.commit(attributes); }

 private:
  nn::CheckpointWriter writer_;
};

// The layers an interrupted pass finished, read from their shards in `dir`; every other tensor from `rest`.
class FinishedLayersSource : public WeightSource {
 public:
  FinishedLayersSource(const std::string& dir, const std::map<int64_t, LayerNotes>& finished,
                       std::shared_ptr<const WeightSource> rest);
  const std::string& where() const override { return rest_->where(); }
  const OptConfig& config() const override { return rest_->config(); }
  bool has(const std::string& name) const override;
  Tensor read_into(const std::string& name, const Tensor& dst) const override;

 private:
  struct Files {
    std::unique_ptr<nn::SafetensorsFile> shard, masks;
  };
  const Files* files_of(const std::string& name) const;  // null when the name is not a finished layer's
  std::map<int64_t, Files> layers_;
  std::shared_ptr<const WeightSource> rest_;
};

}  // namespace pt::opt
