// What makes a stage's result: its chain key says which operations ran ("dense | prune sparsegpt unstructured
// 0.5 | retrain full"); its inputs say with what — the settings its operation reads, the checksums of the data
// it consumes, and (through its parent) everything its starting model came from:
//   every stage   [run] device (resolved), seed, kernels, linear_kernel; every [kernels] key given; every [eval]
//                 key; the test tokens
//   dense         every [model] key but the weights' path and stream; the checksum of the weights themselves
//   prune         every [prune] key but offload_activations (memory only), and statistics_sum only when it is
//                 not `running` (stages recorded before the key existed keep their identity); the calibration windows
//   retrain       every [retrain] key but scope (in the key) and checkpoint_every / log_every / eval_every (a
//                 retraining stage evaluates nothing mid-way, and resumes bit-identically); the train tokens
// Left out on purpose: [run] output, threads, checkpoint_gzip, checkpoint_sparse (where and how results are
// stored), and paths ([data] dir, cache, train_path, calib_file), whose contents the checksums cover.
// [model] stream and [prune] offload_activations only say where the model and the activations live while a stage
// runs: a streamed stage computes the same operations on the same chunks as an in-memory one, and its weights,
// masks and perplexity are bit-identical on the CPU (tests/test_streamed_train_prune.cpp), so either kind of run
// reuses the other's finished stages. (On CUDA, too, the same kernels run in the same order.)
//
// identity = sha256(parent's identity, key, inputs). A stage's record keeps its identity and its inputs, so a
// rerun that would reuse it with other inputs can say exactly what changed.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "apps/train_prune/plan.h"
#include "config/ini_config.h"

namespace pt::app {

using StageInputs = std::vector<std::pair<std::string, std::string>>;  // (name, value), e.g. ("[retrain] lr", "1e-4")

// The run-wide facts the stages' inputs are drawn from.
struct RunFacts {
  std::vector<config::IniConfig::Entry> config;  // the resolved configuration
  std::string device;                            // the device "auto" resolved to
  std::string weights_sha256;                    // weights_checksum() of [model] weights
  std::string train_tokens_sha256, test_tokens_sha256, calibration_sha256;
};

StageInputs stage_inputs(StageOp::Kind kind, const RunFacts& facts);
std::string stage_identity(const std::string& parent_identity, const std::string& key, const StageInputs& inputs);
// "name = value" lines: how inputs are stored where only text fits (mid-stage checkpoints), and back.
std::string inputs_text(const StageInputs& inputs);
StageInputs inputs_from_text(const std::string& text);

// The first difference, e.g. "[retrain] lr was 0.001, now 0.002" ("" when there is none).
std::string describe_change(const StageInputs& recorded, const StageInputs& now);

// Content checksum of a weights source: an HDF5 file (its bytes), a Hugging Face folder (config.json and every
// *.safetensors / *.json file in it, by name), or "random" for random initialisation.
std::string weights_checksum(const std::string& weights);

}  // namespace pt::app
