#include "apps/train_prune/stage_runner.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "apps/common/atomic_file.h"
#include "opt/perplexity.h"
#include "tensor/error.h"
#include "tensor/nvtx.h"
#include "prune/pattern.h"

namespace pt::app {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

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
          {"eval_tokens_per_second", r.eval_tokens_per_second},
          {"reconstruction_error", std::isfinite(r.reconstruction_error) ? json(r.reconstruction_error) : json(nullptr)},
          {"trained_parameters", r.trained_parameters},
          {"total_parameters", r.total_parameters},
          {"final_train_loss", r.final_train_loss}};
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
  r.eval_tokens_per_second = j.value("eval_tokens_per_second", 0.0);
  r.reconstruction_error = j.at("reconstruction_error").is_null() ? NAN : j.at("reconstruction_error").get<double>();
  r.trained_parameters = j.at("trained_parameters");
  r.total_parameters = j.at("total_parameters");
  r.final_train_loss = j.at("final_train_loss");
  return r;
}

}  // namespace

double measured_sparsity(opt::OptForCausalLM& model) {
  double pruned = 0, total = 0;
  for (auto& [_, lin] : model.linear_layers()) {
    const double n = double(lin->weight.data().numel());
    total += n;
    if (lin->has_mask()) pruned += double(prune::mask_pruned_count(lin->weight_mask));
  }
  return total > 0 ? pruned / total : 0.0;
}

StageRunner::StageRunner(RunContext ctx) : ctx_(std::move(ctx)) { fs::create_directories(ctx_.output + "/stages"); }

std::string StageRunner::record_path(const std::string& key) const {
  return ctx_.output + "/stages/" + ctx_.plan->stage(key).id + ".json";
}
std::string StageRunner::checkpoint_path(const std::string& key) const {
  return ctx_.output + "/stages/" + ctx_.plan->stage(key).id + ".h5";
}
bool StageRunner::is_complete(const std::string& key) const {
  return fs::exists(record_path(key)) && fs::exists(checkpoint_path(key));
}

StageRecord StageRunner::ensure(const std::string& key) {
  const Stage& stage = ctx_.plan->stage(key);
  if (is_complete(key)) {
    std::ifstream in(record_path(key));
    json j;
    try {
      j = json::parse(in);
    } catch (const json::exception& e) {
      PT_FAIL("stage record ", record_path(key), " is damaged (", e.what(), "); remove it to recompute the stage");
    }
    PT_CHECK(j.value("key", "") == key, "stage record ", record_path(key), " belongs to stage '", j.value("key", ""),
             "', not '", key, "'");
    return from_json(j);
  }
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

double StageRunner::evaluate(StageRecord& rec) {
  PT_NVTX_RANGE("run/eval");
  opt::PerplexityOptions po;
  po.seqlen = ctx_.eval.seqlen > 0 ? ctx_.eval.seqlen : model_->config().max_position_embeddings;
  po.batch_size = ctx_.eval.batch;
  po.max_windows = ctx_.eval.windows;
  po.show_progress = ctx_.show_progress;
  // Pruned layers run on the configured kernel for the evaluation only (training needs the dense weights).
  const auto layers = model_->linear_layers();
  const std::string kernel = sparse::linear_kernel_name(ctx_.linear_kernel.kernel);
  const nn::LinearKernelReport packed = nn::use_linear_kernel(layers, ctx_.linear_kernel);
  if (ctx_.linear_kernel.kernel != sparse::LinearKernel::dense) ctx_.log->line("  eval: " + packed.summary(kernel));
  opt::PerplexityResult r;
  try {
    r = opt::evaluate_perplexity(*model_, *ctx_.test_tokens, po);
  } catch (...) {
    nn::clear_linear_kernels(layers);
    throw;
  }
  nn::clear_linear_kernels(layers);
  rec.perplexity = r.perplexity;
  rec.mean_nll = r.mean_nll;
  rec.eval_seconds = r.seconds;
  rec.eval_kernel = packed.layers.empty() ? "dense" : kernel;
  rec.eval_tokens_per_second = r.tokens_per_second;
  return r.perplexity;
}

StageRecord StageRunner::run_stage(const Stage& stage) {
  StageRecord rec;
  rec.key = stage.key;
  rec.id = stage.id;
  rec.reconstruction_error = NAN;
  ctx_.log->line("stage " + stage.id + ": " + stage.key);
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
        to.checkpoint_path = ctx_.output + "/stages/" + stage.id + ".train.h5";
        to.run_config = ctx_.run_config + "\n# stage: " + stage.key + "\n";
        to.stage = "retrain";
        // Every retraining stage draws its own batches (and dropout): seeded by the run's seed and the stage,
        // so an iterative chain does not see the same windows at every step of the schedule.
        to.seed = ctx_.seed ^ std::stoull(stage.id, nullptr, 16);
        to.show_progress = ctx_.show_progress;
        to.log = [this](const std::string& s) { ctx_.log->line("  " + s); };
        const train::TrainResult tr = train::train_model(*model_, sel.params, *ctx_.train_tokens, {}, to);
        rec.final_train_loss = tr.history.empty() ? 0.0 : tr.history.back().loss;
      }
      train::finish_scope(*model_, stage.op.scope);
    }
  }
  rec.op_seconds = stage.op.kind == StageOp::Kind::dense ? 0.0 : seconds_since(start);
  rec.sparsity = measured_sparsity(*model_);
  evaluate(rec);

  // Checkpoint first, record second: a record always has its checkpoint.
  nn::Checkpoint ck = train::model_checkpoint(*model_);
  ck.run_config = ctx_.run_config;
  ck.stage = stage.key;
  ck.metrics = to_json(rec).dump();
  const nn::SaveReport saved = nn::save_checkpoint(checkpoint_path(stage.key), ck, ctx_.save);
  if (saved.compressed_parameters > 0) {
    char size[160];
    std::snprintf(size, sizeof size, "  checkpoint %.1f MB; its %lld pruned matrices take %.1f MB compressed (%.1f MB dense)",
                  double(saved.file_bytes) / 1e6, (long long)saved.compressed_parameters,
                  double(saved.parameter_bytes_stored) / 1e6, double(saved.parameter_bytes_dense) / 1e6);
    ctx_.log->line(size);
  }
  write_file_atomic(record_path(stage.key), to_json(rec).dump(2) + "\n");
  fs::remove(ctx_.output + "/stages/" + stage.id + ".train.h5");
  model_key_ = stage.key;
  char line[256];
  std::snprintf(line, sizeof line, "stage %s done: perplexity %.3f, sparsity %.4f, %.1fs (+%.1fs eval)", stage.id.c_str(),
                rec.perplexity, rec.sparsity, rec.op_seconds, rec.eval_seconds);
  ctx_.log->line(line);
  return rec;
}

}  // namespace pt::app
