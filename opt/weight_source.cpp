#include "opt/weight_source.h"

#include <cstdio>
#include <filesystem>

#include "nn/checkpoint_stream.h"
#include "nn/safetensors.h"
#include "tensor/error.h"

namespace pt::opt {

namespace fs = std::filesystem;

std::string mask_file_name(int64_t shard) {
  char name[64];
  std::snprintf(name, sizeof name, "masks-%05lld.safetensors", (long long)shard);
  return name;
}

HfWeightSource::HfWeightSource(const std::string& dir) : checkpoint_(dir) {
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string file = entry.path().filename().string();
    if (file.rfind("masks-", 0) != 0 || entry.path().extension() != ".safetensors") continue;
    mask_files_.push_back(std::make_unique<nn::SafetensorsFile>(entry.path().string()));
    for (const auto& name : mask_files_.back()->names()) {
      PT_CHECK(checkpoint_.has(name), "checkpoint ", dir, ": mask file ", file, " holds a mask for ", name,
               ", which the model does not have");
      const nn::SafetensorsInfo info = mask_files_.back()->info(name);
      PT_CHECK(info.dtype == DType::u8 && info.shape == checkpoint_.info(name).shape, "checkpoint ", dir, ": mask ",
               name, " in ", file, " is ", info.stored_dtype, " ", shape_str(info.shape), ", not U8 of the weight's shape ",
               shape_str(checkpoint_.info(name).shape));
      PT_CHECK(masks_.emplace(name, mask_files_.back().get()).second, "checkpoint ", dir, ": two mask files hold ", name);
    }
  }
}

Tensor HfWeightSource::read_into(const std::string& name, const Tensor& dst) const {
  checkpoint_.read_into(name, dst);
  const auto it = masks_.find(name);
  if (it == masks_.end()) return Tensor();
  Tensor mask = it->second->read(name, DType::u8);
  const uint8_t* m = mask.data<uint8_t>();
  for (int64_t i = 0; i < mask.numel(); ++i)
    PT_CHECK(m[i] <= 1, "checkpoint ", where(), ": mask ", name, " in ", it->second->path(), " holds values other than 0 and 1");
  return mask;
}

CheckpointWeightSource::CheckpointWeightSource(const std::string& path)
    : path_(path), reader_(std::make_unique<nn::CheckpointReader>(path)) {
  config_ = parse_hf_config(reader_->attributes().model_config, path + " (model_config)");
}

CheckpointWeightSource::~CheckpointWeightSource() = default;

bool CheckpointWeightSource::has(const std::string& name) const { return reader_->has_parameter(name); }

Tensor CheckpointWeightSource::read_into(const std::string& name, const Tensor& dst) const {
  nn::CheckpointReader::Parameter p = reader_->read(name);
  PT_CHECK(dst.defined() && dst.shape() == p.value.shape(), "checkpoint ", path_, ": tensor ", name, ": expected shape ",
           dst.defined() ? shape_str(dst.shape()) : std::string("(undefined tensor)"), " but the file has ",
           shape_str(p.value.shape()));
  Tensor(dst).copy_(p.value.device() == dst.device() ? p.value : p.value.to(dst.device()));
  return p.mask;
}

std::unique_ptr<WeightSource> open_weight_source(const std::string& path) {
  if (fs::is_directory(path)) return std::make_unique<HfWeightSource>(path);
  return std::make_unique<CheckpointWeightSource>(path);
}

}  // namespace pt::opt
