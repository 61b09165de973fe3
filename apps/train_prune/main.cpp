// train_prune: the whole experiment of one INI file — prune (magnitude | wanda | sparsegpt, unstructured or
// N:M), retrain (full masked AdamW or PERP's parameter-efficient scopes), evaluate WikiText-2 perplexity,
// checkpoint every stage, and write the table and the plot. Rerunning the same command resumes.
//   ./train_prune --config configs/quickstart.ini
//   ./train_prune --config configs/opt1.3b.ini --set model.weights=/models/opt-1.3b --dry-run
//   ./train_prune --config configs/mini-paper.ini --export-hf "SparseGPT oneshot@0.5" out/hf-sgpt50
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <filesystem>
#include <set>

#include "apps/common/atomic_file.h"
#include "apps/common/pretrain_run.h"
#include "apps/common/run_log.h"
#include "apps/common/sections.h"
#include "apps/train_prune/plan.h"
#include "apps/train_prune/results.h"
#include "apps/train_prune/stage_runner.h"
#include "corpus/tokenizer.h"
#include "corpus/wikitext_tokens.h"
#include "nn/safetensors.h"
#include "opt/hf_checkpoint.h"
#include "prune/calibration.h"
#include "tensor/progress.h"

using namespace pt;
namespace fs = std::filesystem;

namespace {

struct Settings {
  app::RunSection run;
  app::ModelSection model;
  std::string pretrain_config;
  app::DataSection data;
  prune::CalibrationOptions calibration;
  app::EvalSection eval;
  nn::LinearKernelOptions linear_kernel;
  app::Plan plan;
  prune::SparsityPattern pattern;
  prune::SequentialPruneOptions prune;
  train::TrainOptions retrain;
  train::LoraOptions lora;
  int gzip = 0;
  bool sparse_checkpoints = true;
  std::string resolved;
};

Settings read_settings(config::IniConfig& ini) {
  Settings s;
  ini.declare_sections({"run", "experiment", "model", "data", "prune", "retrain", "eval"});
  s.run = app::read_run_section(ini, "runs/train_prune");
  s.gzip = int(ini.integer("run", "checkpoint_gzip", 0, 0, 9));
  // Stage checkpoints store pruned weights as bitmask + kept values (lossless; they load back dense).
  s.sparse_checkpoints = ini.boolean("run", "checkpoint_sparse", true);
  s.pretrain_config = ini.text("model", "pretrain_config", "");
  if (!s.pretrain_config.empty() && !fs::is_regular_file(s.pretrain_config))
    ini.fail("model", "pretrain_config", "no such file (an INI file for ./pretrain)");
  s.model = app::read_model_section(ini, /*weights_may_be_missing=*/!s.pretrain_config.empty());
  s.data = app::read_data_section(ini);
  s.calibration.nsamples = ini.integer("data", "calib_nsamples", prune::kDefaultCalibrationSamples, 1, 1 << 20);
  s.calibration.seqlen = ini.integer("data", "calib_seqlen", 0, 0, s.model.config.max_position_embeddings);
  s.calibration.seed = s.run.seed;
  s.calibration.windows_file = ini.text("data", "calib_file", "");
  if (!s.calibration.windows_file.empty() && !fs::is_regular_file(s.calibration.windows_file))
    ini.fail("data", "calib_file", "no such file (safetensors with input_ids, or text: one window of ids per line)");

  // [experiment]: arms × sparsities; the `paper` preset is Prune and Tune's Table 1 (five arms, 0.0 … 0.8,
  // retraining with AdamW at lr 1e-5 for 1000 steps); keys given explicitly still win.
  const std::string preset = ini.choice("experiment", "preset", "custom", {"custom", "paper"});
  const bool paper = preset == "paper";
  std::string default_arms;
  for (const auto& a : app::paper_arm_specs()) default_arms += (default_arms.empty() ? "" : ", ") + a;
  const std::string arms_text = ini.text("experiment", "arms", paper ? default_arms : "sparsegpt:oneshot, magnitude:oneshot");
  const std::vector<double> sparsities =
      ini.number_list("experiment", "sparsities", paper ? "0.0:0.8:0.1" : "0.5", 0.0, 0.99);
  if (std::set<double>(sparsities.begin(), sparsities.end()).size() != sparsities.size())
    ini.fail("experiment", "sparsities", "lists a sparsity twice");

  const std::string pattern = ini.text("prune", "pattern", "unstructured");
  try {
    s.pattern = prune::parse_sparsity_pattern(pattern, pattern == "unstructured" ? 0.5 : -1.0);
  } catch (const Error& e) {
    ini.fail("prune", "pattern", std::string(e.what()) + " (allowed: unstructured, or N:M with 0 < N < M, e.g. 2:4)");
  }
  if (s.pattern.is_nm())
    for (double sp : sparsities)
      if (sp != 0.0 && std::abs(sp - s.pattern.sparsity) > 1e-12)
        ini.fail("experiment", "sparsities", "pattern " + pattern + " prunes exactly " + std::to_string(s.pattern.sparsity) +
                                                 " of each matrix; list only that sparsity (and 0.0 for the dense model)");
  s.prune.magnitude_group = prune::parse_mask_group(ini.choice("prune", "magnitude_group", "matrix", {"matrix", "row"}));
  s.prune.sparsegpt.blocksize = ini.integer("prune", "blocksize", 128, 1, 256);
  if (s.pattern.is_nm() && s.prune.sparsegpt.blocksize % s.pattern.m != 0)
    ini.fail("prune", "blocksize", "must be a multiple of M = " + std::to_string(s.pattern.m) + " for pattern " + pattern);
  s.prune.sparsegpt.percdamp = ini.number("prune", "percdamp", 0.01, 0.0, 10.0);
  s.prune.sparsegpt.max_damping_retries = int(ini.integer("prune", "damping_retries", 4, 0, 20));
  s.prune.forward_batch = ini.integer("prune", "forward_batch", 8, 1, 4096);
  s.prune.offload_activations = ini.boolean("prune", "offload_activations", false);
  s.prune.measure_reconstruction = ini.boolean("prune", "measure_reconstruction", true);
  s.prune.kernel = s.run.kernels == "unfused" ? prune::PruneKernel::unfused : prune::PruneKernel::fused;
  s.prune.hessian_kernel = s.run.kernels == "unfused" ? prune::HessianKernel::unfused : prune::HessianKernel::fused;

  train::TrainOptions rd;
  rd.steps = paper ? 1000 : 100;
  rd.batch_size = 8;
  rd.seqlen = std::min<int64_t>(512, s.model.config.max_position_embeddings);
  rd.schedule.base_lr = paper ? 1e-5 : 1e-4;
  rd.schedule.kind = nn::LrScheduleKind::constant;
  rd.weight_decay = 0.0;
  rd.checkpoint_every = 100;
  rd.autocast_bf16 = true;
  const train::RetrainScope default_scope = train::parse_retrain_scope(ini.choice(
      "retrain", "scope", "full", {"none", "full", "biases", "layernorm", "biases+layernorm", "lm_head", "mask-lora", "scale-lora"}));
  s.retrain = app::read_train_section(ini, "retrain", rd, s.model.config.max_position_embeddings);
  s.retrain.adamw.kernel = app::adamw_kernel_for(s.run.kernels, s.run.device);
  s.retrain.seed = s.run.seed;
  s.lora.rank = ini.integer("retrain", "lora_rank", 16, 1, 4096);
  s.lora.alpha = ini.number("retrain", "lora_alpha", 32, 0.0, 1e6);
  s.lora.seed = s.run.seed;
  s.eval = app::read_eval_section(ini, s.model.config.max_position_embeddings);
  // The kernel pruned layers run on when perplexity is measured (sparse/packed_linear.h).
  const std::string kernel = ini.choice("run", "linear_kernel", "dense", sparse::linear_kernel_names());
  s.linear_kernel.kernel = sparse::parse_linear_kernel(kernel);
  if (s.linear_kernel.kernel == sparse::LinearKernel::two_four && !(s.pattern.n == 2 && s.pattern.m == 4))
    ini.fail("run", "linear_kernel", "2of4 runs only 2:4-pruned weights, but [prune] pattern = " + pattern +
                                         " (use csr, bitmap or auto, or pattern = 2:4)");
  {
    const int64_t seqlen = s.eval.seqlen > 0 ? s.eval.seqlen : s.model.config.max_position_embeddings;
    s.linear_kernel.auto_options.prefill_tokens = std::min<int64_t>(2048, s.eval.batch * seqlen);
  }

  std::vector<app::Arm> arms;
  std::stringstream ss(arms_text);
  std::string spec;
  while (std::getline(ss, spec, ',')) {
    try {
      arms.push_back(app::parse_arm(spec, default_scope));
    } catch (const Error& e) {
      ini.fail("experiment", "arms", e.what());
    }
  }
  if (arms.empty()) ini.fail("experiment", "arms", "lists no arm");
  std::set<std::string> labels;
  for (const auto& a : arms)
    if (!labels.insert(a.label).second) ini.fail("experiment", "arms", "lists '" + a.label + "' twice");
  s.plan = app::make_plan(arms, sparsities, s.pattern.is_nm() ? pattern : "unstructured");
  ini.finish();
  s.resolved = ini.resolved();
  return s;
}

void print_plan(const Settings& s, const std::string& output) {
  int64_t prune_stages = 0, retrain_stages = 0, done = 0;
  for (const auto& st : s.plan.stages) {
    prune_stages += st.op.kind == app::StageOp::Kind::prune;
    retrain_stages += st.op.kind == app::StageOp::Kind::retrain;
    done += fs::exists(output + "/stages/" + st.id + ".json");
  }
  const auto& c = s.model.config;
  std::printf("plan: %s (%.1fM parameters) on %s, weights %s\n", c.describe().c_str(), double(c.num_parameters()) / 1e6,
              device_name(s.run.device), s.model.weights.c_str());
  std::printf("      %zu arms x %zu sparsities = %zu cells -> %zu unique stages (%lld prune, %lld retrain, 1 dense), %lld already done\n",
              s.plan.arms.size(), s.plan.sparsities.size(), s.plan.cells.size(), s.plan.stages.size(),
              (long long)prune_stages, (long long)retrain_stages, (long long)done);
  for (const auto& a : s.plan.arms) std::printf("      arm: %-40s (%s)\n", a.label.c_str(), a.spec.c_str());
  const int64_t ctx = c.max_position_embeddings;
  const int64_t calib_seqlen = s.calibration.seqlen > 0 ? s.calibration.seqlen : ctx;
  std::printf("      work: %lld pruning passes over %lld layers with %lld x %lld calibration tokens; %lld retraining steps "
              "(%.1fM tokens); %zu evaluations; checkpoints ~%.1f GB\n",
              (long long)prune_stages, (long long)c.num_hidden_layers, (long long)s.calibration.nsamples,
              (long long)calib_seqlen, (long long)(retrain_stages * s.retrain.steps),
              double(retrain_stages * s.retrain.steps * s.retrain.batch_size * s.retrain.grad_accum * s.retrain.seqlen) / 1e6,
              s.plan.stages.size(), double(s.plan.stages.size()) * double(c.num_parameters()) * 4.0 / 1e9);
}

void export_hf(opt::OptForCausalLM& model, const std::string& dir) {
  fs::create_directories(dir);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& [name, var] : model.named_parameters()) tensors.emplace_back(name, var->data().to(Device::cpu).contiguous());
  nn::write_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
  app::write_file_atomic(dir + "/config.json", opt::hf_config_json(model.config(), model.lm_head_tied()) + "\n");
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App cli{"Prune, retrain and evaluate OPT models: the experiment of one INI file"};
  std::string config_path, export_cell, export_dir;
  std::vector<std::string> overrides;
  bool dry_run = false, no_progress = false;
  cli.add_option("--config", config_path, "INI file (see configs/)")->required();
  cli.add_option("--set", overrides, "override a key: section.key=value (repeatable)");
  cli.add_flag("--dry-run", dry_run, "print the resolved configuration and the plan, then exit");
  cli.add_flag("--no-progress", no_progress, "plain log lines instead of progress bars");
  auto* ex = cli.add_option("--export-hf", export_cell, "after the run, export one cell's model: \"ARM@SPARSITY\"");
  cli.add_option("--export-dir", export_dir, "folder for --export-hf (model.safetensors + config.json)")->needs(ex);
  CLI11_PARSE(cli, argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // the plan and tables interleave with the log on stderr in order

  config::IniConfig ini = config::IniConfig::from_file(config_path);
  for (const auto& o : overrides) ini.apply_override(o);
  Settings s = read_settings(ini);
  std::printf("# resolved configuration (%s)\n%s\n", config_path.c_str(), s.resolved.c_str());
  print_plan(s, s.run.output);
  if (dry_run) return 0;

  fs::create_directories(s.run.output);
  app::RunLog log(s.run.output + "/train_prune.log");
  log.line("train_prune --config " + config_path + " (output " + s.run.output + ")");
  app::write_file_atomic(s.run.output + "/config.resolved.ini", s.resolved);
  if (!fs::exists(s.model.weights) && !s.pretrain_config.empty() && s.model.weights != "random") {
    log.line("model weights " + s.model.weights + " missing: pretraining them with " + s.pretrain_config);
    const std::string made = app::run_pretraining(s.pretrain_config, {}, false, !no_progress);
    PT_CHECK(fs::exists(s.model.weights), "pretraining with ", s.pretrain_config, " wrote ", made, ", not [model] weights = ",
             s.model.weights);
  }

  corpus::Gpt2Tokenizer tok(s.data.dir + "/opt-tokenizer/vocab.json", s.data.dir + "/opt-tokenizer/merges.txt");
  const corpus::WikiTextTokens train_ids =
      corpus::wikitext_tokens(tok, corpus::WikiTextSplit::Train, s.data.dir, s.data.cache_dir, s.data.train_path);
  const corpus::WikiTextTokens test_ids = corpus::wikitext_tokens(tok, corpus::WikiTextSplit::Test, s.data.dir, s.data.cache_dir);
  if (!train_ids.note.empty()) log.line("note: " + train_ids.note);

  app::RunContext ctx;
  ctx.plan = &s.plan;
  ctx.model = s.model;
  ctx.device = s.run.device;
  ctx.seed = s.run.seed;
  ctx.pattern = s.pattern;
  ctx.prune = s.prune;
  ctx.retrain = s.retrain;
  ctx.lora = s.lora;
  ctx.eval = s.eval;
  ctx.linear_kernel = s.linear_kernel;
  ctx.train_tokens = &train_ids.ids;
  ctx.test_tokens = &test_ids.ids;
  ctx.output = s.run.output;
  ctx.run_config = s.resolved;
  ctx.save.gzip_level = s.gzip;
  ctx.save.compress_pruned = s.sparse_checkpoints;
  ctx.show_progress = !no_progress;
  ctx.log = &log;
  // The calibration windows: sampled once (or read), recorded with the run, shared by every pruning stage.
  ctx.calibration_ids = prune::calibration_windows(train_ids.ids, s.model.config, s.calibration);
  prune::write_calibration_windows(s.run.output + "/calibration_windows.txt", ctx.calibration_ids,
                                   {{"source", s.calibration.windows_file.empty() ? train_ids.path : s.calibration.windows_file}});

  app::StageRunner runner(ctx);
  // Each long step inside a stage (calibration layers, training steps, evaluation windows) has its own
  // progress display; here one line per stage says where the run is.
  const auto run_start = std::chrono::steady_clock::now();
  size_t index = 0;
  for (const auto& st : s.plan.stages) {
    ++index;
    if (runner.is_complete(st.key)) continue;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
    log.line("[" + std::to_string(index) + "/" + std::to_string(s.plan.stages.size()) + ", " + format_duration(elapsed) +
             " elapsed]");
    runner.ensure(st.key);
  }
  log.line("all " + std::to_string(s.plan.stages.size()) + " stages complete");
  const std::vector<app::ResultRow> rows = app::collect_rows(s.plan, runner);
  app::write_results(s.run.output, s.plan, rows, log);
  std::printf("\nPerplexity (WikiText-2 test) — %s\n\n%s\n", config_path.c_str(), app::results_table(s.plan, rows).c_str());
  std::printf("results: %s/results.{csv,json,md,png}\n", s.run.output.c_str());

  if (!export_cell.empty()) {
    const size_t at = export_cell.rfind('@');
    PT_CHECK(at != std::string::npos, "--export-hf ", export_cell, ": expected ARM@SPARSITY, e.g. \"SparseGPT oneshot@0.5\"");
    const std::string arm = export_cell.substr(0, at);
    const double sp = std::stod(export_cell.substr(at + 1));
    std::string key;
    for (const auto& c : s.plan.cells)
      if (s.plan.arms[c.arm].label == arm && std::abs(c.sparsity - sp) < 1e-9) key = c.stage_key;
    PT_CHECK(!key.empty(), "--export-hf ", export_cell, ": no such cell (arms: see results.md)");
    const std::string dir = export_dir.empty() ? s.run.output + "/export" : export_dir;
    export_hf(runner.model_at(key), dir);
    log.line("exported " + export_cell + " to " + dir + " (model.safetensors + config.json)");
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
