// Runs the stages of a plan, each at most once across interruptions: a stage is complete when its record
// (stages/<id>.json, written atomically after its checkpoint stages/<id>.h5) exists, so rerunning a killed
// run skips every finished stage and redoes only the one that was cut short (a retraining stage continues
// from its own mid-stage checkpoint, bit-identically).
//
// A finished stage is reused only when it is the stage this run would compute: its record holds its identity
// (stage_identity.h: the chain plus every setting and data checksum it depends on) and the size and sha256 of
// its checkpoint. verify_completed() checks both for every finished stage before the run writes anything, and
// stops with one line saying what changed (a setting, a data file) or which checkpoint is damaged.
//
// The model in memory follows the chain being worked on; a stage whose parent is not in memory starts from
// the parent's checkpoint (or from the model source for the dense stage). Checkpoints hold f32 weights and
// masks exactly, so a resumed run computes what an uninterrupted one does.
//
// Streamed runs ([model] stream, memory_plan.h) never hold the model: the dense stage evaluates the weights layer by
// layer where they are (its record says so; it writes no checkpoint), and a prune stage walks its parent (the
// weights, or the parent's checkpoint read per dataset) layer by layer, writing each pruned layer at once to
// stages/<id>.hf/ (Hugging Face shards, masks beside them) and to its checkpoint, then evaluates from those shards.
// A killed streamed stage resumes at its first unfinished layer and ends with the same results. Retraining stages
// run in memory either way. Every record holds the stage's memory peaks (tensor/memory_report.h).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <nlohmann/json.hpp>
#include <vector>

#include "apps/common/run_log.h"
#include "apps/common/sections.h"
#include "apps/train_prune/plan.h"
#include "apps/train_prune/stage_identity.h"
#include "dist/communicator.h"
#include "nn/checkpoint.h"
#include "nn/linear_kernel.h"
#include "opt/perplexity.h"
#include "opt/weight_source.h"
#include "prune/pattern.h"
#include "train/trainer.h"

namespace pt::app {

struct StageRecord {
  std::string key, id, kind;     // kind: dense | prune | retrain
  double perplexity = 0, mean_nll = 0;
  double sparsity = 0;           // measured over every decoder Linear weight
  double op_seconds = 0;         // pruning or retraining (0 for dense)
  double eval_seconds = 0;
  std::string eval_kernel = "dense";  // the linear kernel the evaluation ran ([run] linear_kernel)
  // The variant each kernel family ran ([run] kernels, [kernels]); sparse_linear is eval_kernel. Empty in records
  // written before the kernel registry.
  std::map<std::string, std::string> kernels;
  double eval_tokens_per_second = 0;
  double reconstruction_error = 0;  // prune stages (summed over matrices; NaN if not measured)
  int64_t trained_parameters = 0, total_parameters = 0;  // retrain stages
  double final_train_loss = 0;   // retrain stages
  std::string identity;          // stage_identity() of the stage that made this record
  StageInputs inputs;            // ... and its inputs, so a mismatch can be explained
  int64_t checkpoint_bytes = 0;  // the stage's checkpoint as written: a rerun relies on it being intact
  std::string checkpoint_sha256;
  std::string checkpoint = "stage";  // "stage": stages/<id>.h5; "weights": none, the stage is [model] weights itself
  bool streamed = false;             // its layers were streamed from disk
  // Peaks over the stage (reset at its start): the resident set (VmHWM) and the device memory the CUDA allocator
  // held, with both allocators' live-tensor peaks.
  int64_t peak_host_rss_bytes = 0, peak_device_bytes = 0;
  int64_t peak_host_tensor_bytes = 0, peak_device_tensor_bytes = 0;
};

struct RunContext {
  const Plan* plan = nullptr;
  ModelSection model;
  Device device = Device::cpu;
  uint64_t seed = 0;
  prune::SparsityPattern pattern;            // kind (n, m) for N:M; sparsity set per stage
  prune::SequentialPruneOptions prune;       // method/pattern set per stage
  train::TrainOptions retrain;               // paths, run_config, seeds set per stage
  train::LoraOptions lora;
  EvalSection eval;
  nn::LinearKernelOptions linear_kernel;     // the kernel pruned layers run on during evaluation
  Tensor calibration_ids;                    // [nsamples, seqlen] (undefined when no method needs it)
  const std::vector<int32_t>* train_tokens = nullptr;
  const std::vector<int32_t>* test_tokens = nullptr;
  std::string output;                        // the run's folder
  std::string run_config;                    // resolved configuration text (stored in every checkpoint)
  nn::SaveOptions save;
  bool show_progress = true;
  RunLog* log = nullptr;
  RunFacts facts;                            // what the stages' identities are made of
  bool stream = false;                       // prune and evaluation stages stream the model (memory_plan.h)
  std::unique_ptr<opt::OptForCausalLM> dense_model;  // the model as loaded (and checked) at the start, or null
  // Several ranks: pruning and evaluation split their windows across them; rank 0 alone writes checkpoints and
  // records, the others wait for it. Null: this process alone.
  dist::Communicator* comm = nullptr;
};

class StageRunner {
 public:
  explicit StageRunner(RunContext ctx);  // writes nothing
  // Reads the record of every stage of the plan that has one and checks it against this run: identity (else
  // "what changed"), checkpoint size and sha256 (else "damaged"), and a leftover mid-stage checkpoint of an
  // unfinished stage. Throws pt::Error with one line; returns the number of stages found complete.
  size_t verify_completed();
  // The stage's record, computing it (and its missing ancestors) first when needed.
  StageRecord ensure(const std::string& key);
  bool is_complete(const std::string& key) const { return complete_.count(key) > 0; }
  void set_log(RunLog* log) { ctx_.log = log; }  // before the first stage runs
  std::string checkpoint_path(const std::string& key) const;
  // A streamed prune stage's Hugging Face folder (shards, index, config.json; masks beside them).
  std::string shards_path(const std::string& key) const;
  // The model as that stage left it (loaded from its checkpoint when not in memory).
  opt::OptForCausalLM& model_at(const std::string& key);

 private:
  std::string record_path(const std::string& key) const;
  std::string train_checkpoint_path(const std::string& key) const;
  std::string train_run_config(const Stage& stage) const;  // what a mid-stage checkpoint must have been made with
  void verify_checkpoint(const StageRecord& rec) const;     // size and sha256 as recorded
  void bring_model_to(const std::string& key);
  StageRecord run_stage(const Stage& stage);
  void run_in_memory(const Stage& stage, StageRecord& rec);
  double evaluate(StageRecord& rec);
  void record_evaluation(StageRecord& rec, const opt::PerplexityResult& r, const std::string& eval_kernel) const;
  // stage_runner_streamed.cpp
  void run_streamed(const Stage& stage, StageRecord& rec);
  void evaluate_streamed(StageRecord& rec, std::shared_ptr<const opt::WeightSource> source);
  std::shared_ptr<const opt::WeightSource> source_of(const std::string& key) const;  // the model a stage left
  void check_unfinished_layers(const Stage& stage) const;  // stages/<id>.hf of another pass: one line

  RunContext ctx_;
  std::map<std::string, std::string> identity_;   // stage key -> identity
  std::map<std::string, StageInputs> inputs_;     // stage key -> inputs
  std::map<std::string, StageRecord> complete_;   // verified records, by key
  std::unique_ptr<opt::OptForCausalLM> model_;
  std::string model_key_;  // the stage the in-memory model is at ("" = none)
};

// Fraction of pruned entries over every decoder Linear weight (0 when none has a mask).
double measured_sparsity(opt::OptForCausalLM& model);
// "  checkpoint 12.3 MB; its 72 pruned matrices take ..." for a checkpoint with compressed parameters.
std::string describe_checkpoint_size(const nn::SaveReport& saved);
// The record as stored in stages/<id>.json and in its checkpoint's metrics.
nlohmann::json stage_record_json(const StageRecord& record);

}  // namespace pt::app
