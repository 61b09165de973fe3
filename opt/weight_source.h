// Where a streamed model's tensors come from, one tensor at a time by canonical Hugging Face name: a Hugging Face
// folder (model.safetensors or shards with their index, read with pread, never mapped; fp16/bf16/fp32 converted on
// reading) or this project's HDF5 checkpoint (read per dataset). Both also give the u8 keep-mask stored with a pruned weight:
// the HDF5 file's /masks, or the masks-NNNNN.safetensors files a streamed stage writes beside its shards
// (opt/layer_sink.h). Reading is safe from several threads at once.
#pragma once
#include <map>
#include <memory>
#include <string>

#include "opt/config.h"
#include "opt/hf_checkpoint.h"
#include "tensor/tensor.h"

namespace pt::nn {
class CheckpointReader;
}

namespace pt::opt {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual const std::string& where() const = 0;  // the folder or file, for messages
  // The stored model: its shape, and tie_word_embeddings as the files have it.
  virtual const OptConfig& config() const = 0;
  virtual bool has(const std::string& name) const = 0;
  // Converts the stored tensor into dst (its shape must match; any dtype and device) and returns the parameter's u8
  // keep-mask on the CPU, or an undefined tensor when none is stored. Errors name the source and the tensor.
  virtual Tensor read_into(const std::string& name, const Tensor& dst) const = 0;
};

class HfWeightSource : public WeightSource {
 public:
  explicit HfWeightSource(const std::string& dir);
  const std::string& where() const override { return checkpoint_.dir(); }
  const OptConfig& config() const override { return checkpoint_.config(); }
  bool has(const std::string& name) const override { return checkpoint_.has(name); }
  Tensor read_into(const std::string& name, const Tensor& dst) const override;

 private:
  HfCheckpoint checkpoint_;
  std::vector<std::unique_ptr<nn::SafetensorsFile>> mask_files_;
  std::map<std::string, const nn::SafetensorsFile*> masks_;  // parameter name -> the file holding its mask
};

class CheckpointWeightSource : public WeightSource {
 public:
  explicit CheckpointWeightSource(const std::string& path);
  ~CheckpointWeightSource() override;
  const std::string& where() const override { return path_; }
  const OptConfig& config() const override { return config_; }
  bool has(const std::string& name) const override;
  Tensor read_into(const std::string& name, const Tensor& dst) const override;

 private:
  std::string path_;
  std::unique_ptr<nn::CheckpointReader> reader_;
  OptConfig config_;
};

// A folder is a Hugging Face model, a file an HDF5 checkpoint.
std::unique_ptr<WeightSource> open_weight_source(const std::string& path);

// The name of a mask file beside shard `shard` (1-based) of a streamed stage's folder: "masks-00003.safetensors".
std::string mask_file_name(int64_t shard);

}  // namespace pt::opt
