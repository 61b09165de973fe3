// The streamed stages of StageRunner (stage_runner.h): the dense evaluation and pruning, layer by layer from disk.
#include <chrono>
#include <filesystem>

#include "apps/train_prune/stage_runner.h"
#include "corpus/sha256.h"
#include "opt/layer_sink.h"
#include "opt/perplexity.h"
#include "opt/streamed_layers.h"
#include "tensor/error.h"
#include "tensor/nvtx.h"

namespace pt::app {

namespace fs = std::filesystem;

std::shared_ptr<const opt::WeightSource> StageRunner::source_of(const std::string& key) const {
  const Stage& st = ctx_.plan->stage(key);
  std::shared_ptr<const opt::WeightSource> source;
  if (st.op.kind == StageOp::Kind::dense) source = opt::open_weight_source(ctx_.model.weights);
  else source = std::make_shared<opt::CheckpointWeightSource>(checkpoint_path(key));
  PT_CHECK(source->config().same_architecture(ctx_.model.config), source->where(), " holds ",
           source->config().describe(), ", but [model] describes ", ctx_.model.config.describe());
  return source;
}

void StageRunner::check_unfinished_layers(const Stage& stage) const {
  const std::string dir = shards_path(stage.key);
  if (stage.op.kind != StageOp::Kind::prune || !fs::exists(dir)) return;
  opt::HfShardSink::finished_layers(dir, ctx_.model.config, identity_.at(stage.key));  // throws on another pass's
}

void StageRunner::evaluate_streamed(StageRecord& rec, std::shared_ptr<const opt::WeightSource> source) {
  PT_NVTX_RANGE("run/eval");
  opt::StreamedLayers walk(std::move(source), ctx_.device, DType::f32);
  opt::PerplexityOptions po;
  po.seqlen = ctx_.eval.seqlen > 0 ? ctx_.eval.seqlen : walk.config().max_position_embeddings;
  po.batch_size = ctx_.eval.batch;
  po.max_windows = ctx_.eval.windows;
  po.show_progress = ctx_.show_progress;
  po.activations = ctx_.prune.activations;
  po.activation_dir = ctx_.output + "/stages";
  // Pruned layers run on the configured kernel, packed as each layer arrives (the slot drops it with its layer).
  const std::string kernel = sparse::linear_kernel_name(ctx_.linear_kernel.kernel);
  nn::LinearKernelReport packed;
  if (ctx_.linear_kernel.kernel != sparse::LinearKernel::dense)
    walk.set_on_acquire([&](int64_t i, opt::DecoderLayer& layer) {
      std::vector<std::pair<std::string, nn::Linear*>> named;
      for (auto& [name, lin] : layer.linear_layers()) named.emplace_back(opt::layer_prefix(i) + name, lin);
      const nn::LinearKernelReport r = nn::use_linear_kernel(named, ctx_.linear_kernel);
      packed.layers.insert(packed.layers.end(), r.layers.begin(), r.layers.end());
      packed.dense_bytes += r.dense_bytes;
      packed.stored_bytes += r.stored_bytes;
    });
  const opt::PerplexityResult r = opt::evaluate_perplexity(walk, *ctx_.test_tokens, po);
  if (ctx_.linear_kernel.kernel != sparse::LinearKernel::dense) ctx_.log->line("  eval: " + packed.summary(kernel));
  record_evaluation(rec, r, packed.layers.empty() ? "dense" : kernel);
}

void StageRunner::run_streamed(const Stage& stage, StageRecord& rec) {
  rec.streamed = true;
  if (stage.op.kind == StageOp::Kind::dense) {
    rec.kind = "dense";
    rec.checkpoint = "weights";  // nothing to write: the dense model is [model] weights, checksummed in the identity
    evaluate_streamed(rec, source_of(stage.key));
    return;
  }
  PT_CHECK(stage.op.kind == StageOp::Kind::prune, "train_prune: only prune and evaluation stages stream");
  PT_NVTX_RANGE("run/prune");
  rec.kind = "prune";
  const auto start = std::chrono::steady_clock::now();
  const std::shared_ptr<const opt::WeightSource> parent = source_of(stage.parent);
  const std::string dir = shards_path(stage.key);
  const std::string& identity = identity_.at(stage.key);
  // Layers finished by an interrupted run of this very stage are read back from their shards, not recomputed.
  const auto finished = opt::HfShardSink::finished_layers(dir, parent->config(), identity);
  std::shared_ptr<const opt::WeightSource> source = parent;
  if (!finished.empty()) {
    source = std::make_shared<opt::FinishedLayersSource>(dir, finished, parent);
    ctx_.log->line("  resuming: " + std::to_string(finished.size()) + " of " +
                   std::to_string(parent->config().num_hidden_layers) + " layers were finished in " + dir);
  }
  opt::HfShardSink shards(dir, parent->config(), identity);
  opt::CheckpointSink checkpoint(checkpoint_path(stage.key), ctx_.save);
  prune::PruneReport report;
  {
    opt::StreamedLayers walk(source, ctx_.device, DType::f32, {&shards, &checkpoint}, finished);
    prune::SequentialPruneOptions po = ctx_.prune;
    po.method = stage.op.method;
    po.pattern = ctx_.pattern.is_nm() ? ctx_.pattern : prune::SparsityPattern::unstructured(stage.op.sparsity);
    po.show_progress = ctx_.show_progress;
    po.activation_dir = ctx_.output + "/stages";
    po.log = [this](const std::string& s) { ctx_.log->line("  " + s); };
    const bool needs_data = stage.op.method != prune::PruneMethod::magnitude || po.measure_reconstruction;
    report = prune::prune_layers(walk, needs_data ? ctx_.calibration_ids : Tensor(), po);
  }
  rec.reconstruction_error = report.reconstruction_error;
  rec.op_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rec.sparsity = report.sparsity;  // pruned / total over every decoder weight, as measured_sparsity() counts them
  evaluate_streamed(rec, std::make_shared<opt::HfWeightSource>(dir));

  // Checkpoint first, record second (run_stage): the checkpoint's layers were written as they finished.
  nn::Checkpoint attributes;
  attributes.model_config = opt::hf_config_json(parent->config());
  attributes.run_config = ctx_.run_config;
  attributes.stage = stage.key;
  attributes.metrics = stage_record_json(rec).dump();
  const nn::SaveReport saved = checkpoint.commit(attributes);
  if (saved.compressed_parameters > 0) ctx_.log->line(describe_checkpoint_size(saved));
  rec.checkpoint_bytes = saved.file_bytes;
  rec.checkpoint_sha256 = corpus::sha256_file_hex(checkpoint_path(stage.key));
}

}  // namespace pt::app
