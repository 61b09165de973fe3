#include "apps/train_prune/settings.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>

#include "tensor/error.h"

namespace pt::app {

namespace fs = std::filesystem;

Settings read_settings(config::IniConfig& ini) {
  Settings s;
  ini.declare_sections({"run", "kernels", "experiment", "model", "data", "prune", "retrain", "eval"});
  s.run = read_run_section(ini, "runs/train_prune");
  s.gzip = int(ini.integer("run", "checkpoint_gzip", 0, 0, 9));
  // Stage checkpoints store pruned weights as bitmask + kept values (lossless; they load back dense).
  s.sparse_checkpoints = ini.boolean("run", "checkpoint_sparse", true);
  s.pretrain_config = ini.text("model", "pretrain_config", "");
  if (!s.pretrain_config.empty() && !fs::is_regular_file(s.pretrain_config))
    ini.fail("model", "pretrain_config", "no such file (an INI file for ./pretrain)");
  s.model = read_model_section(ini, /*weights_may_be_missing=*/!s.pretrain_config.empty());
  // Prune and evaluation stages stream the model layer by layer from disk (apps/train_prune/memory_plan.h).
  const std::string stream = ini.choice("model", "stream", "auto", {"auto", "on", "off"});
  s.stream = stream == "on" ? StreamMode::on : stream == "off" ? StreamMode::off : StreamMode::automatic;
  if (s.stream == StreamMode::on && (s.model.weights.empty() || s.model.weights == "random"))
    ini.fail("model", "stream", "on streams the weights from disk, but [model] weights = random (write a random model "
                                "with make_random_opt, or give an HF folder or an .h5 checkpoint)");
  s.data = read_data_section(ini);
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
  for (const auto& a : paper_arm_specs()) default_arms += (default_arms.empty() ? "" : ", ") + a;
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
  // Where the hidden states of every calibration sequence (and of every window of a streamed evaluation) live.
  s.prune.activations = opt::parse_activation_place(
      ini.choice("prune", "offload_activations", "auto", {"auto", "device", "host", "disk", "true", "false"}));
  s.prune.measure_reconstruction = ini.boolean("prune", "measure_reconstruction", true);
  // Several ranks: each matrix pruned by one rank and broadcast, or by every rank alike (the same result).
  s.prune.prune_on_every_rank = ini.choice("prune", "prune_on", "one_rank", {"one_rank", "every_rank"}) == "every_rank";
  // How the calibration statistics are summed (prune/exact_sum.h): exact gives the same masks on any number of ranks.
  s.prune.statistics_sum =
      prune::parse_statistics_sum(ini.choice("prune", "statistics_sum", "running", {"running", "exact"}));

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
  s.retrain = read_train_section(ini, "retrain", rd, s.model.config.max_position_embeddings);
  s.retrain.seed = s.run.seed;
  s.lora.rank = ini.integer("retrain", "lora_rank", 16, 1, 4096);
  s.lora.alpha = ini.number("retrain", "lora_alpha", 32, 0.0, 1e6);
  s.lora.seed = s.run.seed;
  s.eval = read_eval_section(ini, s.model.config.max_position_embeddings);
  // The kernel pruned layers run on when perplexity is measured (sparse/packed_linear.h).
  // [kernels] sparse_linear names the same choice (a variant of sparse/linear_family.h); give one, or both alike.
  std::string kernel = ini.choice("run", "linear_kernel", "dense", sparse::linear_kernel_names());
  if (const auto given = s.run.kernel_choices.find("sparse_linear"); given != s.run.kernel_choices.end()) {
    if (ini.has("run", "linear_kernel") && given->second != kernel)
      ini.fail("kernels", "sparse_linear", "contradicts [run] linear_kernel = " + kernel + " (give one of them)");
    kernel = given->second;
  }
  s.linear_kernel.kernel = sparse::parse_linear_kernel(kernel);
  if (s.linear_kernel.kernel == sparse::LinearKernel::two_four && !(s.pattern.n == 2 && s.pattern.m == 4)) {
    const bool in_run = !s.run.kernel_choices.count("sparse_linear");
    ini.fail(in_run ? "run" : "kernels", in_run ? "linear_kernel" : "sparse_linear",
             "2of4 runs only 2:4-pruned weights, but [prune] pattern = " + pattern +
                 " (use csr, bitmap or auto, or pattern = 2:4)");
  }
  {
    const int64_t seqlen = s.eval.seqlen > 0 ? s.eval.seqlen : s.model.config.max_position_embeddings;
    s.linear_kernel.auto_options.prefill_tokens = std::min<int64_t>(2048, s.eval.batch * seqlen);
  }

  std::vector<Arm> arms;
  std::stringstream ss(arms_text);
  std::string spec;
  while (std::getline(ss, spec, ',')) {
    try {
      arms.push_back(parse_arm(spec, default_scope));
    } catch (const Error& e) {
      ini.fail("experiment", "arms", e.what());
    }
  }
  if (arms.empty()) ini.fail("experiment", "arms", "lists no arm");
  std::set<std::string> labels;
  for (const auto& a : arms)
    if (!labels.insert(a.label).second) ini.fail("experiment", "arms", "lists '" + a.label + "' twice");
  s.plan = make_plan(arms, sparsities, s.pattern.is_nm() ? pattern : "unstructured");
  ini.finish();
  s.resolved = ini.resolved();
  s.resolved_entries = ini.resolved_entries();
  return s;
}

void print_plan(const Settings& s, const std::string& output) {
  int64_t prune_stages = 0, retrain_stages = 0, done = 0;
  for (const auto& st : s.plan.stages) {
    prune_stages += st.op.kind == StageOp::Kind::prune;
    retrain_stages += st.op.kind == StageOp::Kind::retrain;
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

}  // namespace pt::app
