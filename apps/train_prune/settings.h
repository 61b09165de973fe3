// The settings of a train_prune run, read and checked from its INI file (every key, with file:line in each error),
// and the plan they expand to; print_plan shows both before anything runs.
#pragma once
#include <string>
#include <vector>

#include "apps/common/sections.h"
#include "apps/train_prune/plan.h"
#include "config/ini_config.h"
#include "nn/linear_kernel.h"
#include "prune/calibration.h"
#include "prune/pattern.h"
#include "prune/sequential.h"
#include "train/scopes.h"
#include "train/trainer.h"

namespace pt::app {

// [model] stream: auto streams when the model would not fit the device or the host (apps/train_prune/memory_plan.h).
enum class StreamMode { automatic, on, off };

struct Settings {
  RunSection run;
  ModelSection model;
  StreamMode stream = StreamMode::automatic;
  std::string pretrain_config;
  DataSection data;
  prune::CalibrationOptions calibration;
  EvalSection eval;
  nn::LinearKernelOptions linear_kernel;
  Plan plan;
  prune::SparsityPattern pattern;
  prune::SequentialPruneOptions prune;
  train::TrainOptions retrain;
  train::LoraOptions lora;
  int gzip = 0;
  bool sparse_checkpoints = true;
  std::string resolved;                               // the resolved configuration as INI text
  std::vector<config::IniConfig::Entry> resolved_entries;  // ... and as entries
};

Settings read_settings(config::IniConfig& ini);
// The resolved model, the plan's size, and how many of its stages OUTPUT already holds.
void print_plan(const Settings& s, const std::string& output);

}  // namespace pt::app
