#include "apps/common/pretrain_run.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "apps/common/run_log.h"
#include "apps/common/sections.h"
#include "base/atomic_file.h"
#include "corpus/tokenizer.h"
#include "corpus/wikitext_tokens.h"
#include "tensor/error.h"
#include "tensor/progress.h"

namespace pt::app {

namespace fs = std::filesystem;

std::string run_pretraining(const std::string& config_path, const std::vector<std::string>& overrides,
                            bool dry_run, bool show_progress) {
  config::IniConfig ini = config::IniConfig::from_file(config_path);
  for (const auto& s : overrides) ini.apply_override(s);
  ini.declare_sections({"run", "kernels", "model", "data", "train", "eval"});
  const RunSection run = read_run_section(ini, "runs/pretrain");
  const ModelSection model_section = read_model_section(ini);
  const DataSection data = read_data_section(ini);
  train::TrainOptions defaults;
  defaults.steps = 1000;
  defaults.batch_size = 16;
  defaults.seqlen = 256;
  defaults.schedule.base_lr = 1e-3;
  defaults.schedule.kind = nn::LrScheduleKind::cosine;
  defaults.schedule.warmup_steps = 50;
  defaults.schedule.min_lr_ratio = 0.1;
  defaults.weight_decay = 0.1;
  defaults.adamw.beta2 = 0.95;
  defaults.eval_every = 250;
  defaults.checkpoint_every = 100;
  train::TrainOptions opts = read_train_section(ini, "train", defaults, model_section.config.max_position_embeddings);
  const EvalSection eval = read_eval_section(ini, model_section.config.max_position_embeddings);
  ini.finish();

  const opt::OptConfig& mc = model_section.config;
  const std::string final_path = run.output + "/model.h5";
  const int64_t tokens = opts.steps * opts.batch_size * opts.grad_accum * opts.seqlen;
  std::printf("# resolved configuration (%s)\n%s\n", config_path.c_str(), ini.resolved().c_str());
  std::printf("plan: %s, %.1fM parameters on %s\n", mc.describe().c_str(), double(mc.num_parameters()) / 1e6,
              device_name(run.device));
  std::printf("      %lld steps x %lld windows x %lld tokens = %.1fM training tokens; eval every %lld steps; output %s\n",
              (long long)opts.steps, (long long)(opts.batch_size * opts.grad_accum), (long long)opts.seqlen,
              double(tokens) / 1e6, (long long)opts.eval_every, run.output.c_str());
  if (dry_run) return final_path;

  // Load and check everything first: bad input stops here with one line, and the output folder of an earlier
  // run stays as it was.
  corpus::Gpt2Tokenizer tok(data.dir + "/opt-tokenizer/vocab.json", data.dir + "/opt-tokenizer/merges.txt");
  PT_CHECK(int64_t(tok.vocab_size()) <= mc.vocab_size, "config ", config_path, ": [model] vocab ", mc.vocab_size,
           " is smaller than the tokenizer's ", tok.vocab_size(), " ids");
  const corpus::WikiTextTokens train_ids =
      corpus::wikitext_tokens(tok, corpus::WikiTextSplit::Train, data.dir, data.cache_dir, data.train_path);
  const corpus::WikiTextTokens test_ids = corpus::wikitext_tokens(tok, corpus::WikiTextSplit::Test, data.dir, data.cache_dir);
  require_tokens(train_ids, 2 * opts.seqlen, "two training windows of " + std::to_string(opts.seqlen) + " ([train] seqlen)");
  const int64_t eval_seqlen = eval.seqlen > 0 ? eval.seqlen : opts.seqlen;
  require_tokens(test_ids, eval_seqlen, "one evaluation window of " + std::to_string(eval_seqlen) + " ([eval] seqlen)");
  auto model = build_model(model_section, run.device, run.seed);
  opts.seed = run.seed;
  opts.eval_seqlen = eval_seqlen;
  opts.eval_batch = eval.batch;
  opts.eval_windows = eval.periodic_windows;
  opts.final_eval_windows = eval.windows;
  opts.checkpoint_path = run.output + "/checkpoint.h5";
  opts.run_config = ini.resolved();
  opts.stage = "pretrain";
  opts.show_progress = show_progress;
  if (fs::exists(final_path)) {
    nn::LoadOptions lo;
    lo.load_optimizer = false;
    const nn::Checkpoint done = nn::load_checkpoint(final_path, lo);
    PT_CHECK(done.run_config == opts.run_config, final_path, " was made by another configuration; remove it or choose another [run] output");
  }

  // From here on the run writes into its output folder.
  fs::create_directories(run.output);
  RunLog log(run.output + "/pretrain.log");
  opts.log = [&](const std::string& s) { log.line(s); };
  if (!train_ids.note.empty()) log.line("note: " + train_ids.note);
  for (const auto* t : {&train_ids, &test_ids})
    if (!t->warning.empty()) log.line("warning: " + t->warning);
  if (fs::exists(final_path)) {
    log.line("already complete: " + final_path + " (remove it to train again)");
    return final_path;
  }
  log.line("train tokens: " + std::to_string(train_ids.ids.size()) + " (" + train_ids.path + "), test tokens: " +
           std::to_string(test_ids.ids.size()));
  const train::TrainResult r = train::train_model(*model, train::all_parameters(*model), train_ids.ids, test_ids.ids, opts);

  // The end of the run is one commit: every output is written atomically, and model.h5 (the last checkpoint
  // renamed), which marks the run complete, comes last. A kill before that rename leaves an unfinished run
  // whose rerun resumes from checkpoint.h5 at the last step and writes the same files again.
  std::ostringstream csv;
  csv.precision(9);  // enough digits to compare runs (resumed vs uninterrupted) exactly
  csv << "step,loss,lr,grad_norm,test_perplexity\n";
  size_t e = 0;
  for (const auto& s : r.history) {
    csv << s.step << "," << s.loss << "," << s.lr << "," << s.grad_norm << ",";
    while (e < r.evals.size() && r.evals[e].step < s.step) ++e;
    if (e < r.evals.size() && r.evals[e].step == s.step) csv << r.evals[e].perplexity;
    csv << "\n";
  }
  write_file_atomic(run.output + "/loss.csv", csv.str());
  nlohmann::json summary = {{"config", config_path},
                            {"model", mc.describe()},
                            {"parameters", mc.num_parameters()},
                            {"device", device_name(run.device)},
                            {"steps", opts.steps},
                            {"training_tokens", tokens},
                            {"train_text", train_ids.path},
                            {"test_perplexity", r.final_perplexity()},
                            {"final_train_loss", r.history.empty() ? 0.0 : r.history.back().loss},
                            {"seconds_this_process", r.seconds},
                            {"tokens_per_second", r.tokens_per_second},
                            {"resumed_from_step", r.resumed_from}};
  write_file_atomic(run.output + "/pretrain.json", summary.dump(2) + "\n");
  plot_loss_curve(run.output + "/loss.csv", run.output + "/loss.png", log);
  rename_durably(opts.checkpoint_path, final_path);
  char line[256];
  std::snprintf(line, sizeof line, "done: test perplexity %.2f after %lld steps (%.1fM tokens) in %s (%.0f tok/s) -> %s",
                r.final_perplexity(), (long long)opts.steps, double(tokens) / 1e6, format_duration(r.seconds).c_str(),
                r.tokens_per_second, final_path.c_str());
  log.line(line);
  return final_path;
}

}  // namespace pt::app
