// HDF5 checkpoints: one file per checkpoint holding a model's parameters (by Hugging Face name), its pruning
// masks, optional AdamW state, and everything a stopped run needs to resume (configs, stage counters, RNG state,
// metrics so far).
//
// Layout (HDF5 >= 1.10 format, readable with h5py / h5dump; metadata checksummed, so damage is detected):
//   /parameters/<name>   f32, or a real IEEE half type when SaveOptions::fp16_parameters; chunked with a
//                        Fletcher-32 checksum (and gzip + shuffle when asked)
//   /masks/<name>        u8 (0/1), keyed by the parameter it masks, same shape
//   /optimizer/m/<name>, /optimizer/v/<name>   f32; attribute "step" (int64) on /optimizer
//   root attributes: format, format_version, model_config (JSON), run_config (text), stage, stage_index, step,
//                    rng_seed, rng_offset (uint64), metrics (JSON); strings are fixed-length UTF-8 (h5py: bytes)
// Groups track link creation order, so parameters load back in the order they were saved.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace pt::nn {

inline constexpr int64_t kCheckpointFormatVersion = 1;
inline constexpr const char* kCheckpointFormatName = "prune-and-tune checkpoint";

// AdamW moments per parameter (same names and shapes as the parameters they belong to) and the step count.
struct OptimizerState {
  std::map<std::string, Tensor> m, v;
  int64_t step = 0;
};

struct Checkpoint {
  std::vector<std::pair<std::string, Tensor>> parameters;  // HF names, e.g. "model.decoder.layers.0.fc1.weight"
  std::map<std::string, Tensor> masks;                     // u8, keyed by parameter name
  std::optional<OptimizerState> optimizer;

  std::string model_config = "{}";  // JSON
  std::string run_config;           // the run's full resolved configuration text
  std::string stage;                // e.g. "retrain"
  int64_t stage_index = 0;
  int64_t step = 0;
  Generator rng;               // seed + offset
  std::string metrics = "{}";  // JSON

  const Tensor* find_parameter(const std::string& name) const;  // nullptr when absent
};

struct SaveOptions {
  bool fp16_parameters = false;  // store parameters as IEEE half (masks stay u8, optimizer state f32)
  int gzip_level = 0;            // 0 = no compression; 1..9 = gzip with shuffle (chunked)
  bool checksums = true;         // Fletcher-32 per chunk, so damaged tensor data fails to load instead of loading
};

struct LoadOptions {
  bool keep_fp16 = false;      // fp16-stored parameters load as f16 tensors instead of f32
  bool load_optimizer = true;  // false skips /optimizer (its tensors are twice the model)
};

// Writes atomically: PATH.tmp in the same folder, flush + close, fsync, rename over PATH, fsync the folder.
// The previous file at PATH is untouched until the rename; on any failure the .tmp is removed and pt::Error
// is thrown. Tensors may live on any device and in any floating dtype (converted on the host).
void save_checkpoint(const std::string& path, const Checkpoint& ckpt, const SaveOptions& options = {});

// Reads and validates everything (file, format + version, attributes, every dataset's rank/shape/dtype,
// masks and optimizer state consistent with the parameters). Tensors come back on the CPU, contiguous.
// A truncated or damaged file throws "checkpoint PATH is truncated or corrupt (...)"; nothing is half-loaded.
Checkpoint load_checkpoint(const std::string& path, const LoadOptions& options = {});

// Compares a loaded checkpoint with what a model expects. Throws pt::Error naming the tensor on a missing
// tensor, an unexpected tensor, or a shape mismatch (both shapes). `masks`, when given, is checked the same way.
using ExpectedTensors = std::vector<std::pair<std::string, Shape>>;
void validate_checkpoint(const Checkpoint& ckpt, const ExpectedTensors& parameters,
                         const std::optional<ExpectedTensors>& masks = std::nullopt);

}  // namespace pt::nn
