#include "apps/train_prune/stage_runner.h"

#include <signal.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/atomic_file.h"
#include "corpus/sha256.h"
#include "opt/perplexity.h"
#include "tensor/error.h"
#include "tensor/memory_report.h"
#include "tensor/nvtx.h"
#include "prune/pattern.h"

namespace pt::app {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// PT_TEST_DIE_AT=RANK:STEP, for the tests of a rank dying mid-run only: that rank ends itself with SIGKILL (no
// cleanup, as a crashed or killed process would) right after retraining step STEP.
std::function<void(int64_t)> death_for_tests(const dist::Communicator* comm) {
  const char* at = std::getenv("PT_TEST_DIE_AT");
  if (!at || !*at) return nullptr;
  int rank = -1;
  long long step = -1;
  char tail = 0;
  PT_CHECK(std::sscanf(at, "%d:%lld%c", &rank, &step, &tail) == 2, "PT_TEST_DIE_AT = '", at, "': expected RANK:STEP");
  if ((comm ? comm->rank() : 0) != rank) return nullptr;
  return [step](int64_t s) {
    if (s != step) return;
    std::fflush(nullptr);
    ::raise(SIGKILL);
  };
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

json to_json(const StageRecord& r) {
  return {{"key", r.key},
          {"id", r.id},
          {"kind", r.kind},
          {"perplexity", r.perplexity},
          {"mean_nll", r.mean_nll},
          {"sparsity", r.sparsity},
          {"op_seconds", r.op_seconds},
          {"eval_seconds", r.eval_seconds},
          {"eval_kernel", r.eval_kernel},
          {"kernels", r.kernels},
          {"eval_tokens_per_second", r.eval_tokens_per_second},
          {"reconstruction_error", std::isfinite(r.reconstruction_error) ? json(r.reconstruction_error) : json(nullptr)},
          {"trained_parameters", r.trained_parameters},
          {"total_parameters", r.total_parameters},
          {"final_train_loss", r.final_train_loss},
          {"identity", r.identity},
          {"inputs", r.inputs},
          {"checkpoint_bytes", r.checkpoint_bytes},
          {"checkpoint_sha256", r.checkpoint_sha256},
          {"checkpoint", r.checkpoint},
          {"streamed", r.streamed},
          {"peak_host_rss_bytes", r.peak_host_rss_bytes},
          {"peak_device_bytes", r.peak_device_bytes},
          {"peak_host_tensor_bytes", r.peak_host_tensor_bytes},
          {"peak_device_tensor_bytes", r.peak_device_tensor_bytes}};
}

StageRecord from_json(const json& j) {
  StageRecord r;
  r.key = j.at("key");
  r.id = j.at("id");
  r.kind = j.at("kind");
  r.perplexity = j.at("perplexity");
  r.mean_nll = j.at("mean_nll");
  r.sparsity = j.at("sparsity");
  r.op_seconds = j.at("op_seconds");
  r.eval_seconds = j.at("eval_seconds");
  r.eval_kernel = j.value("eval_kernel", std::string("dense"));  // records written before sparse kernels existed
  if (j.contains("kernels")) r.kernels = j.at("kernels").get<std::map<std::string, std::string>>();
  r.eval_tokens_per_second = j.value("eval_tokens_per_second", 0.0);
  r.reconstruction_error = j.at("reconstruction_error").is_null() ? NAN : j.at("reconstruction_error").get<double>();
  r.trained_parameters = j.at("trained_parameters");
  r.total_parameters = j.at("total_parameters");
  r.final_train_loss = j.at("final_train_loss");
  r.identity = j.value("identity", std::string());  // "" in records of builds before stage identities
  if (j.contains("inputs")) r.inputs = j.at("inputs").get<StageInputs>();
  r.checkpoint_bytes = j.value("checkpoint_bytes", int64_t(0));
  r.checkpoint_sha256 = j.value("checkpoint_sha256", std::string());
  r.checkpoint = j.value("checkpoint", std::string("stage"));  // records written before streaming existed
  r.streamed = j.value("streamed", false);
  r.peak_host_rss_bytes = j.value("peak_host_rss_bytes", int64_t(0));
  r.peak_device_bytes = j.value("peak_device_bytes", int64_t(0));
  r.peak_host_tensor_bytes = j.value("peak_host_tensor_bytes", int64_t(0));
  r.peak_device_tensor_bytes = j.value("peak_device_tensor_bytes", int64_t(0));
  return r;
}

}  // namespace

json stage_record_json(const StageRecord& r) { return to_json(r); }

std::string describe_checkpoint_size(const nn::SaveReport& saved) {
  char size[160];
  std::snprintf(size, sizeof size, "  checkpoint %.1f MB; its %lld pruned matrices take %.1f MB compressed (%.1f MB dense)",
                double(saved.file_bytes) / 1e6, (long long)saved.compressed_parameters,
                double(saved.parameter_bytes_stored) / 1e6, double(saved.parameter_bytes_dense) / 1e6);
  return size;
}

double measured_sparsity(opt::OptForCausalLM& model) {
  double pruned = 0, total = 0;
  for (auto& [_, lin] : model.linear_layers()) {
    const double n = double(lin->weight.data().numel());
    total += n;
    if (lin->has_mask()) pruned += double(prune::mask_pruned_count(lin->weight_mask));
  }
  return total > 0 ? pruned / total : 0.0;
}

StageRunner::StageRunner(RunContext ctx) : ctx_(std::move(ctx)) {
  for (const Stage& st : ctx_.plan->stages) {  // parents come first
    inputs_[st.key] = stage_inputs(st.op.kind, ctx_.facts);
    identity_[st.key] = stage_identity(st.parent.empty() ? "" : identity_.at(st.parent), st.key, inputs_[st.key]);
  }
  if (ctx_.dense_model) {
    model_ = std::move(ctx_.dense_model);
    model_key_ = ctx_.plan->stages.front().key;
  }
}

std::string StageRunner::record_path(const std::string& key) const {
  return ctx_.output + "/stages/" + ctx_.plan->stage(key).id + ".json";
}
std::string StageRunner::checkpoint_path(const std::string& key) const {
  return ctx_.output + "/stages/" + ctx_.plan->stage(key).id + ".h5";
}
std::string StageRunner::shards_path(const std::string& key) const {
  return ctx_.output + "/stages/" + ctx_.plan->stage(key).id + ".hf";
}
std::string StageRunner::train_checkpoint_path(const std::string& key) const {
  return ctx_.output + "/stages/" + ctx_.plan->stage(key).id + ".train.h5";
}
std::string StageRunner::train_run_config(const Stage& stage) const {
  return "stage: " + stage.key + "\nidentity: " + identity_.at(stage.key) + "\n" + inputs_text(inputs_.at(stage.key));
}

void StageRunner::verify_checkpoint(const StageRecord& rec) const {
  const std::string path = checkpoint_path(rec.key);
  const std::string fix = "; remove it and " + record_path(rec.key) + " to recompute the stage";
  std::error_code ec;
  const auto bytes = fs::file_size(path, ec);
  PT_CHECK(!ec, "checkpoint ", path, " of stage '", rec.key, "' cannot be read (", ec.message(), ")", fix);
  PT_CHECK(int64_t(bytes) == rec.checkpoint_bytes, "checkpoint ", path, " of stage '", rec.key, "' is damaged: ", bytes,
           " bytes, but its record says ", rec.checkpoint_bytes, fix);
  PT_CHECK(corpus::sha256_file_hex(path) == rec.checkpoint_sha256, "checkpoint ", path, " of stage '", rec.key,
           "' is damaged: its sha256 differs from the one recorded when it was written", fix);
}

size_t StageRunner::verify_completed() {
  const std::string redo = "; choose another [run] output, or remove " + ctx_.output + "/stages to recompute";
  for (const Stage& st : ctx_.plan->stages) {
    const std::string rec_path = record_path(st.key);
    // A streamed dense stage has no checkpoint: its model is [model] weights, whose checksum is in its identity.
    const bool maybe_weights = st.op.kind == StageOp::Kind::dense && fs::exists(rec_path);
    if (fs::exists(rec_path) && (fs::exists(checkpoint_path(st.key)) || maybe_weights)) {
      std::ifstream in(rec_path);
      json j;
      StageRecord rec;
      try {
        j = json::parse(in);
        rec = from_json(j);
      } catch (const json::exception& e) {
        PT_FAIL("stage record ", rec_path, " is damaged (", e.what(), "); remove it to recompute the stage");
      }
      if (!fs::exists(checkpoint_path(st.key)) && rec.checkpoint != "weights") continue;
      PT_CHECK(rec.key == st.key, "stage record ", rec_path, " belongs to stage '", rec.key, "', not '", st.key, "'");
      PT_CHECK(!rec.identity.empty(), "stage record ", rec_path, " of stage '", st.key,
               "' was written by an older build and does not say which settings and data made it", redo);
      if (rec.identity != identity_.at(st.key)) {
        const std::string change = describe_change(rec.inputs, inputs_.at(st.key));
        PT_CHECK(!change.empty(), "stage '", st.key, "' in ", ctx_.output, " was made from another version of stage '",
                 st.parent, "' (whose record is gone)", redo);
        PT_FAIL("stage '", st.key, "' in ", ctx_.output, " was made with other inputs: ", change, redo);
      }
      if (rec.checkpoint != "weights") verify_checkpoint(rec);
      complete_[st.key] = rec;
      continue;
    }
    if (ctx_.stream) check_unfinished_layers(st);
    // An unfinished retraining stage resumes from its mid-stage checkpoint only if that was made by this stage.
    const std::string partial = train_checkpoint_path(st.key);
    if (st.op.kind != StageOp::Kind::retrain || !fs::exists(partial)) continue;
    nn::LoadOptions lo;
    lo.load_optimizer = false;
    const std::string made_by = nn::load_checkpoint(partial, lo).run_config;
    if (made_by == train_run_config(st)) continue;
    // Written by this build for a stage: "stage: KEY", "identity: ID", then its inputs, one per line.
    const size_t body = made_by.rfind("stage: ", 0) == 0 ? made_by.find('\n', made_by.find('\n') + 1) : std::string::npos;
    const std::string change =
        body == std::string::npos ? "" : describe_change(inputs_from_text(made_by.substr(body + 1)), inputs_.at(st.key));
    PT_FAIL("mid-stage checkpoint ", partial, " of stage '", st.key, "' was made with other inputs",
            change.empty() ? std::string() : ": " + change,
            "; remove it to start the stage afresh, or choose another [run] output");
  }
  return complete_.size();
}

StageRecord StageRunner::ensure(const std::string& key) {
  const Stage& stage = ctx_.plan->stage(key);
  if (const auto it = complete_.find(key); it != complete_.end()) return it->second;
  if (!stage.parent.empty()) ensure(stage.parent);
  return run_stage(stage);
}

opt::OptForCausalLM& StageRunner::model_at(const std::string& key) {
  ensure(key);
  bring_model_to(key);
  return *model_;
}

void StageRunner::bring_model_to(const std::string& key) {
  if (model_ && model_key_ == key) return;
  PT_NVTX_RANGE("run/load_stage");
  model_ = build_model(ctx_.model, ctx_.device, ctx_.seed);
  model_key_ = "";
  if (ctx_.plan->stage(key).op.kind != StageOp::Kind::dense) {
    nn::LoadOptions lo;
    lo.load_optimizer = false;
    const nn::Checkpoint ck = nn::load_checkpoint(checkpoint_path(key), lo);
    if (ck.find_parameter("lm_head.weight") && !model_->lm_head) model_->untie_lm_head();
    train::load_model_checkpoint(*model_, ck);
  }
  model_key_ = key;
}

// What an evaluation puts in a stage's record, in-memory or streamed alike.
void StageRunner::record_evaluation(StageRecord& rec, const opt::PerplexityResult& r,
                                   const std::string& eval_kernel) const {
  rec.perplexity = r.perplexity;
  rec.mean_nll = r.mean_nll;
  rec.eval_seconds = r.seconds;
  rec.eval_kernel = eval_kernel;
  rec.kernels = resolved_kernels(ctx_.device);
  rec.kernels["sparse_linear"] = rec.eval_kernel;
  rec.eval_tokens_per_second = r.tokens_per_second;
}

double StageRunner::evaluate(StageRecord& rec) {
  PT_NVTX_RANGE("run/eval");
  opt::PerplexityOptions po;
  po.seqlen = ctx_.eval.seqlen > 0 ? ctx_.eval.seqlen : model_->config().max_position_embeddings;
  po.batch_size = ctx_.eval.batch;
  po.max_windows = ctx_.eval.windows;
  po.show_progress = ctx_.show_progress;
  po.comm = ctx_.comm;
  // Pruned layers run on the configured kernel for the evaluation only: their dense weights are released while it
  // runs and restored, bit for bit, when the kernels are cleared (training and checkpoints need them).
  const auto layers = model_->linear_layers();
  const std::string kernel = sparse::linear_kernel_name(ctx_.linear_kernel.kernel);
  nn::LinearKernelOptions eval_kernel = ctx_.linear_kernel;
  eval_kernel.release_dense = true;
  const nn::LinearKernelReport packed = nn::use_linear_kernel(layers, eval_kernel);
  if (ctx_.linear_kernel.kernel != sparse::LinearKernel::dense) ctx_.log->line("  eval: " + packed.summary(kernel));
  opt::PerplexityResult r;
  try {
    r = opt::evaluate_perplexity(*model_, *ctx_.test_tokens, po);
  } catch (...) {
    nn::clear_linear_kernels(layers);
    throw;
  }
  nn::clear_linear_kernels(layers);
  record_evaluation(rec, r, packed.layers.empty() ? "dense" : kernel);
  return r.perplexity;
}

StageRecord StageRunner::run_stage(const Stage& stage) {
  StageRecord rec;
  rec.key = stage.key;
  rec.id = stage.id;
  rec.reconstruction_error = NAN;
  rec.identity = identity_.at(stage.key);
  rec.inputs = inputs_.at(stage.key);
  const bool writes = !ctx_.comm || ctx_.comm->rank() == 0;  // rank 0 alone writes; the others wait for it
  if (writes) fs::create_directories(ctx_.output + "/stages");
  ctx_.log->line("stage " + stage.id + ": " + stage.key);
  reset_memory_peaks();
  const int64_t rss_at_start = current_rss_bytes();  // what the run held before the stage (data, tokenizer, code)
  if (ctx_.stream && stage.op.kind != StageOp::Kind::retrain) run_streamed(stage, rec);
  else run_in_memory(stage, rec);
  const MemoryPeaks peaks = memory_peaks();  // the checkpoint's writing included
  rec.peak_host_rss_bytes = peaks.host_rss_bytes;
  rec.peak_device_bytes = peaks.device_bytes;
  rec.peak_host_tensor_bytes = peaks.host_tensor_bytes;
  rec.peak_device_tensor_bytes = peaks.device_tensor_bytes;
  if (!writes) {
    ctx_.comm->barrier();
    complete_[stage.key] = rec;
    return rec;
  }
  write_file_atomic(record_path(stage.key), to_json(rec).dump(2) + "\n");
  complete_[stage.key] = rec;
  fs::remove(train_checkpoint_path(stage.key));
  if (ctx_.comm) ctx_.comm->barrier();
  char line[400];
  std::snprintf(line, sizeof line,
                "stage %s done: perplexity %.3f, sparsity %.4f, %.1fs (+%.1fs eval); peak memory: host RSS %s%s (%s at "
                "the start), %s tensors %s%s",
                stage.id.c_str(), rec.perplexity, rec.sparsity, rec.op_seconds, rec.eval_seconds,
                format_bytes(rec.peak_host_rss_bytes).c_str(), peaks.host_rss_reset ? "" : " (since the start)",
                format_bytes(rss_at_start).c_str(),
                device_name(ctx_.device), format_bytes(ctx_.device == Device::cuda ? rec.peak_device_bytes : rec.peak_host_tensor_bytes).c_str(),
                ctx_.device == Device::cuda ? "" : (" (pool " + format_bytes(peaks.host_pool_bytes) + ")").c_str());
  ctx_.log->line(line);
  return rec;
}

void StageRunner::run_in_memory(const Stage& stage, StageRecord& rec) {
  const auto start = std::chrono::steady_clock::now();
  if (stage.op.kind == StageOp::Kind::dense) {
    rec.kind = "dense";
    bring_model_to(stage.key);
  } else {
    bring_model_to(stage.parent);
    model_key_ = "";  // the model is being changed: it is at no stage until this one completes
    if (stage.op.kind == StageOp::Kind::prune) {
      PT_NVTX_RANGE("run/prune");
      rec.kind = "prune";
      prune::SequentialPruneOptions po = ctx_.prune;
      po.method = stage.op.method;
      po.pattern = ctx_.pattern.is_nm() ? ctx_.pattern : prune::SparsityPattern::unstructured(stage.op.sparsity);
      po.show_progress = ctx_.show_progress;
      po.log = [this](const std::string& s) { ctx_.log->line("  " + s); };
      po.comm = ctx_.comm;
      const bool needs_data = stage.op.method != prune::PruneMethod::magnitude || po.measure_reconstruction;
      const prune::PruneReport report = prune::prune_model(*model_, needs_data ? ctx_.calibration_ids : Tensor(), po);
      rec.reconstruction_error = report.reconstruction_error;
    } else {
      PT_NVTX_RANGE("run/retrain");
      rec.kind = "retrain";
      train::ScopeSelection sel = train::prepare_scope(*model_, stage.op.scope, ctx_.lora);
      rec.trained_parameters = sel.trained;
      rec.total_parameters = sel.total;
      if (!sel.params.empty() && ctx_.retrain.steps > 0) {
        train::TrainOptions to = ctx_.retrain;
        to.checkpoint_path = train_checkpoint_path(stage.key);
        to.run_config = train_run_config(stage);  // a resume checks it: only this very stage continues
        to.stage = "retrain";
        // Every retraining stage draws its own batches (and dropout): seeded by the run's seed and the stage,
        // so an iterative chain does not see the same windows at every step of the schedule.
        to.seed = ctx_.seed ^ std::stoull(stage.id, nullptr, 16);
        to.show_progress = ctx_.show_progress;
        to.comm = ctx_.comm;
        to.log = [this](const std::string& s) { ctx_.log->line("  " + s); };
        to.after_step = death_for_tests(ctx_.comm);
        const train::TrainResult tr = train::train_model(*model_, sel.params, *ctx_.train_tokens, {}, to);
        rec.final_train_loss = tr.history.empty() ? 0.0 : tr.history.back().loss;
      }
      train::finish_scope(*model_, stage.op.scope);
    }
  }
  rec.op_seconds = stage.op.kind == StageOp::Kind::dense ? 0.0 : seconds_since(start);
  rec.sparsity = measured_sparsity(*model_);
  evaluate(rec);
  if (ctx_.comm && ctx_.comm->rank() != 0) {  // rank 0 writes this stage's checkpoint (run_stage waits for it)
    model_key_ = stage.key;
    return;
  }

  // Checkpoint first, record second: a record always has its checkpoint.
  nn::Checkpoint ck = train::model_checkpoint(*model_);
  ck.run_config = ctx_.run_config;
  ck.stage = stage.key;
  ck.metrics = to_json(rec).dump();
  const nn::SaveReport saved = nn::save_checkpoint(checkpoint_path(stage.key), ck, ctx_.save);
  if (saved.compressed_parameters > 0) ctx_.log->line(describe_checkpoint_size(saved));
  rec.checkpoint_bytes = saved.file_bytes;
  rec.checkpoint_sha256 = corpus::sha256_file_hex(checkpoint_path(stage.key));
  model_key_ = stage.key;
  fs::remove_all(shards_path(stage.key));  // left by an interrupted streamed run of this stage: no longer its output
}

}  // namespace pt::app
