// Reading the configuration sections shared by the apps (pretrain, train_prune) from a validated INI file,
// so every app accepts the same keys with the same meaning, ranges and error messages.
//   [run]    device, seed, kernels, output, threads
//   [kernels] one variant per kernel family (tensor/kernel_registry.h), overriding [run] kernels for that family
//   [model]  preset / custom shape of a new OPT model, or weights to load
//   [data]   WikiText-2 and tokenizer folders, token cache
//   [train]  / [retrain]  steps, batch, sequence length, optimizer, schedule, checkpoints
//   [eval]   perplexity windows
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/ini_config.h"
#include "corpus/wikitext_tokens.h"
#include "nn/adamw.h"
#include "opt/model.h"
#include "train/trainer.h"

namespace pt::app {

struct RunSection {
  Device device = Device::cpu;
  std::string device_name = "auto";
  uint64_t seed = 0;
  std::string kernels = "fused";  // the shorthand: every kernel family's fused (or unfused) variant on the device
  std::map<std::string, std::string> kernel_choices;  // [kernels] family = variant, as given
  std::string output;             // the run's folder
  int64_t threads = 0;            // 0 = OpenMP's default
};
// Reads [run] and [kernels] (each key a kernel family of lab/lab_family.h, each value one of its registered
// variants that runs on the run's device; anything else stops with one line listing what is allowed), then makes
// that selection for this process (kernels::set_shorthand and each family's select).
RunSection read_run_section(config::IniConfig& ini, const std::string& default_output);
// The variant every kernel family runs on `device` under the current selection, e.g. obs_sweep -> reference.
std::map<std::string, std::string> resolved_kernels(Device device);

struct ModelSection {
  std::string preset;    // a preset name, or "custom" (shape below)
  opt::OptConfig config; // resolved shape
  std::string weights;   // "" / "random" = random init; an HF folder; or an HDF5 checkpoint (.h5)
};
// weights_may_be_missing: a missing weights file is allowed (it will be pretrained first).
ModelSection read_model_section(config::IniConfig& ini, bool weights_may_be_missing = false);
// Builds the model on `device`: random init (seeded) or weights from an HF folder / HDF5 checkpoint.
std::unique_ptr<opt::OptForCausalLM> build_model(const ModelSection& m, Device device, uint64_t seed);

struct DataSection {
  std::string dir = "data";
  std::string train_path;  // "" = the default train text under dir
  std::string cache_dir = "cache";
};
DataSection read_data_section(config::IniConfig& ini);
// Stops with one line naming the text file when it gives fewer than `needed` tokens for `purpose`.
void require_tokens(const corpus::WikiTextTokens& text, int64_t needed, const std::string& purpose);

// [train]-style section (also [retrain]): fills the trainer's options except paths and logging.
train::TrainOptions read_train_section(config::IniConfig& ini, const std::string& section,
                                       const train::TrainOptions& defaults, int64_t max_seqlen);

struct EvalSection {
  int64_t seqlen = 0;   // 0 = the model's context (SparseGPT's protocol)
  int64_t batch = 4;
  int64_t windows = 0;  // 0 = all
  int64_t periodic_windows = 0;  // evaluations during training (0 = all): a cheaper estimate
};
EvalSection read_eval_section(config::IniConfig& ini, int64_t max_seqlen);

}  // namespace pt::app
