// train_prune: the whole experiment of one INI file — prune (magnitude | wanda | sparsegpt, unstructured or
// N:M), retrain (full masked AdamW or PERP's parameter-efficient scopes), evaluate WikiText-2 perplexity,
// checkpoint every stage, and write the table and the plot. Rerunning the same command resumes.
//   ./train_prune --config configs/quickstart.ini
//   ./train_prune --config configs/opt1.3b.ini --set model.weights=/models/opt-1.3b --dry-run
//   ./train_prune --config configs/mini-paper.ini --export-hf "SparseGPT oneshot@0.5" --export-dir out/hf-sgpt50
#include <CLI/CLI.hpp>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "apps/common/pretrain_run.h"
#include "apps/common/run_log.h"
#include "apps/common/sections.h"
#include "apps/train_prune/memory_plan.h"
#include "apps/train_prune/results.h"
#include "apps/train_prune/settings.h"
#include "apps/train_prune/stage_identity.h"
#include "apps/train_prune/stage_runner.h"
#include "base/atomic_file.h"
#include "corpus/sha256.h"
#include "corpus/tokenizer.h"
#include "corpus/wikitext_tokens.h"
#include "dist/world.h"
#include "nn/safetensors.h"
#include "opt/hf_checkpoint.h"
#include "opt/weight_source.h"
#include "prune/calibration.h"
#include "tensor/progress.h"

using namespace pt;
namespace fs = std::filesystem;

namespace {

// A streamed prune stage's folder is already what transformers loads: its shards, index and config.json are copied
// (not the masks beside them), each atomically.
void export_shards(const std::string& from, const std::string& dir) {
  fs::create_directories(dir);
  for (const auto& entry : fs::directory_iterator(from)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("masks-", 0) == 0 || name.find(".tmp") != std::string::npos) continue;
    AtomicFile out(dir + "/" + name);
    std::ifstream in(entry.path(), std::ios::binary);
    std::vector<char> buffer(size_t(1) << 22);
    while (in) {
      in.read(buffer.data(), std::streamsize(buffer.size()));
      if (in.gcount() > 0) out.write(buffer.data(), size_t(in.gcount()));
    }
    PT_CHECK(!in.bad(), "--export-hf: cannot read ", entry.path().string());
    out.commit();
  }
}

// The run's ranks (one process unless launched by mpirun): kept outside main's try so that an error on any rank
// can still end every rank (Communicator::abort) after main's locals are gone.
std::unique_ptr<dist::Communicator> g_comm;

// Writes one cell's model for transformers: model.safetensors + config.json, each atomically.
void export_hf(opt::OptForCausalLM& model, const std::string& dir) {
  fs::create_directories(dir);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& [name, var] : model.named_parameters()) tensors.emplace_back(name, var->data().to(Device::cpu).contiguous());
  nn::write_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
  write_file_atomic(dir + "/config.json", opt::hf_config_json(model.config(), model.lm_head_tied()) + "\n");
}

struct ExportRequest {
  std::string cell, key, dir;  // key: the cell's stage ("" = no export)
};

// --export-hf "ARM@SPARSITY", checked against the plan before anything runs.
ExportRequest parse_export(const std::string& cell, const std::string& dir, const app::Settings& s) {
  ExportRequest r;
  if (cell.empty()) return r;
  std::string arms, sparsities;
  for (const auto& a : s.plan.arms) arms += (arms.empty() ? "" : ", ") + a.label;
  for (double x : s.plan.sparsities) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", x);
    sparsities += (sparsities.empty() ? "" : ", ") + std::string(buf);
  }
  const std::string allowed = " (expected ARM@SPARSITY with ARM one of: " + arms + "; SPARSITY one of: " + sparsities + ")";
  const size_t at = cell.rfind('@');
  PT_CHECK(at != std::string::npos, "--export-hf ", cell, ": no '@'", allowed);
  const std::string arm = cell.substr(0, at), number = cell.substr(at + 1);
  char* end = nullptr;
  errno = 0;
  const double sparsity = std::strtod(number.c_str(), &end);
  PT_CHECK(!number.empty() && *end == '\0' && errno != ERANGE && std::isfinite(sparsity), "--export-hf ", cell, ": '",
           number, "' is not a number", allowed);
  for (const auto& c : s.plan.cells)
    if (s.plan.arms[c.arm].label == arm && std::abs(c.sparsity - sparsity) < 1e-9) r.key = c.stage_key;
  PT_CHECK(!r.key.empty(), "--export-hf ", cell, ": no such cell", allowed);
  r.cell = cell;
  r.dir = dir.empty() ? s.run.output + "/export" : dir;
  PT_CHECK(!fs::exists(r.dir) || fs::is_directory(r.dir), "--export-dir ", r.dir, ": is a file, not a folder");
  return r;
}

// Everything a run reads, loaded and checked before its output folder is touched.
struct RunInputs {
  corpus::WikiTextTokens train, test;
  std::unique_ptr<opt::OptForCausalLM> model;  // the dense model
  Tensor calibration;                          // the calibration windows
  std::vector<std::string> notes;              // for the log, once it exists
  app::RunFacts facts;
};

RunInputs load_inputs(const app::Settings& s, bool stream, bool show_progress) {
  RunInputs in;
  const corpus::Gpt2Tokenizer tok(s.data.dir + "/opt-tokenizer/vocab.json", s.data.dir + "/opt-tokenizer/merges.txt");
  in.train = corpus::wikitext_tokens(tok, corpus::WikiTextSplit::Train, s.data.dir, s.data.cache_dir, s.data.train_path);
  in.test = corpus::wikitext_tokens(tok, corpus::WikiTextSplit::Test, s.data.dir, s.data.cache_dir);
  if (!in.train.note.empty()) in.notes.push_back("note: " + in.train.note);
  for (const auto* t : {&in.train, &in.test})
    if (!t->warning.empty()) in.notes.push_back("warning: " + t->warning);

  if (!fs::exists(s.model.weights) && !s.pretrain_config.empty() && s.model.weights != "random") {
    std::fprintf(stderr, "model weights %s missing: pretraining them with %s\n", s.model.weights.c_str(),
                 s.pretrain_config.c_str());
    in.notes.push_back("model weights " + s.model.weights + " were missing: pretrained them with " + s.pretrain_config);
    const std::string made = app::run_pretraining(s.pretrain_config, {}, false, show_progress);
    PT_CHECK(fs::exists(s.model.weights), "pretraining with ", s.pretrain_config, " wrote ", made,
             ", not [model] weights = ", s.model.weights);
  }
  // Streamed, the weights are opened and checked (every shard's header, the shape) but never loaded whole.
  opt::OptConfig mc = s.model.config;
  if (stream) {
    const auto source = opt::open_weight_source(s.model.weights);
    PT_CHECK(source->config().same_architecture(s.model.config), "[model] weights = ", s.model.weights, " holds ",
             source->config().describe(), ", but [model] preset = ", s.model.preset, " describes ", s.model.config.describe());
  } else {
    in.model = app::build_model(s.model, s.run.device, s.run.seed);
    mc = in.model->config();
  }
  PT_CHECK(int64_t(tok.vocab_size()) <= mc.vocab_size, "the model (", mc.describe(), ", [model] weights = ", s.model.weights,
           ") has a vocabulary of ", mc.vocab_size, " ids, fewer than the tokenizer's ", tok.vocab_size(), " (", s.data.dir,
           "/opt-tokenizer/vocab.json)");
  const int64_t eval_seqlen = s.eval.seqlen > 0 ? s.eval.seqlen : mc.max_position_embeddings;
  app::require_tokens(in.test, eval_seqlen, "one evaluation window of " + std::to_string(eval_seqlen) + " ([eval] seqlen)");
  bool retrains = false;
  for (const auto& st : s.plan.stages) retrains |= st.op.kind == app::StageOp::Kind::retrain;
  if (retrains && s.retrain.steps > 0)
    app::require_tokens(in.train, 2 * s.retrain.seqlen,
                        "two training windows of " + std::to_string(s.retrain.seqlen) + " ([retrain] seqlen)");
  prune::CalibrationOptions calibration = s.calibration;
  calibration.source = in.train.path;
  in.calibration = prune::calibration_windows(in.train.ids, mc, calibration);

  in.facts.config = s.resolved_entries;
  in.facts.device = device_name(s.run.device);
  in.facts.weights_sha256 = app::weights_checksum(s.model.weights);
  in.facts.train_tokens_sha256 = corpus::sha256_hex(in.train.ids.data(), in.train.ids.size() * sizeof(int32_t));
  in.facts.test_tokens_sha256 = corpus::sha256_hex(in.test.ids.data(), in.test.ids.size() * sizeof(int32_t));
  const Tensor windows = in.calibration.contiguous();
  in.facts.calibration_sha256 = corpus::sha256_hex(shape_str(windows.shape()) + " " +
                                                   corpus::sha256_hex(windows.data_ptr(), size_t(windows.nbytes())));
  return in;
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
  const dist::Launch launch = dist::detect_launch();
  dist::select_rank_device(launch);  // one GPU per rank, before any CUDA work

  config::IniConfig ini = config::IniConfig::from_file(config_path);
  for (const auto& o : overrides) ini.apply_override(o);
  const app::Settings s = app::read_settings(ini);
  g_comm = dist::connect(launch, s.run.device);
  const bool writes = g_comm->rank() == 0;  // rank 0 alone prints, logs and writes; the others compute with it
  if (!writes) {
    no_progress = true;  // progress bars (stderr) and tables (stdout) are rank 0's
    PT_CHECK(std::freopen("/dev/null", "w", stdout), g_comm->describe(), ": cannot silence stdout");
  }
  bool retrains = false;
  for (const auto& st : s.plan.stages) retrains |= st.op.kind == app::StageOp::Kind::retrain && s.retrain.steps > 0;
  PT_CHECK(!retrains || s.retrain.batch_size >= g_comm->size(), "[retrain] batch_size = ", s.retrain.batch_size, " windows are split across ",
           g_comm->size(), " ranks: use batch_size >= ", g_comm->size(), " or fewer ranks");
  const ExportRequest exported = parse_export(export_cell, export_dir, s);
  std::printf("# resolved configuration (%s)\n%s\n", config_path.c_str(), s.resolved.c_str());
  app::print_plan(s, s.run.output);
  const app::StreamDecision stream = app::decide_streaming(s);
  for (const auto& line : app::memory_plan_lines(s, stream)) std::printf("%s\n", line.c_str());
  if (dry_run) return 0;
  app::check_retraining_fits(s, stream);
  // A streamed walk writes each finished layer from the process that prunes it; with several ranks every rank
  // would write the same shards. Streaming runs on one rank (the ranks split windows, not layers).
  PT_CHECK(!stream.stream || g_comm->size() == 1, "[model] stream: the run streams layers (", stream.reason,
           ") and that runs on one rank only, not ", g_comm->size(), "; set [model] stream = off or launch one process");

  // Load and check everything (data, weights, calibration windows, the stages a rerun would reuse) first: bad
  // input stops the run here with one line, and the output folder of an earlier run stays as it was.
  // Rank 0 first (it may pretrain missing weights, which the others then read).
  if (!writes) g_comm->barrier_unbounded();
  RunInputs in = load_inputs(s, stream.stream, !no_progress);
  if (writes) g_comm->barrier_unbounded();
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
  ctx.calibration_ids = in.calibration;
  ctx.train_tokens = &in.train.ids;
  ctx.test_tokens = &in.test.ids;
  ctx.output = s.run.output;
  ctx.run_config = s.resolved;
  ctx.save.gzip_level = s.gzip;
  ctx.save.compress_pruned = s.sparse_checkpoints;
  ctx.show_progress = !no_progress;
  ctx.facts = in.facts;
  ctx.dense_model = std::move(in.model);
  ctx.stream = stream.stream;
  ctx.comm = g_comm.get();
  app::StageRunner runner(std::move(ctx));
  const size_t done = runner.verify_completed();

  // From here on the run writes into its output folder.
  if (writes) fs::create_directories(s.run.output);
  app::RunLog log(writes ? s.run.output + "/train_prune.log" : "");
  runner.set_log(&log);
  log.line("train_prune --config " + config_path + " (output " + s.run.output + ", " + std::to_string(done) + " of " +
           std::to_string(s.plan.stages.size()) + " stages already complete)");
  for (const auto& n : in.notes) log.line(n);
  log.line("memory: " + stream.reason);
  if (g_comm->size() > 1)
    log.line(std::to_string(g_comm->size()) + " ranks (" + g_comm->backend() + "): calibration, training and evaluation windows split across them");
  // The calibration windows: sampled once (or read), recorded with the run, shared by every pruning stage.
  if (writes) write_file_atomic(s.run.output + "/config.resolved.ini", s.resolved);
  if (writes) prune::write_calibration_windows(s.run.output + "/calibration_windows.txt", in.calibration,
                                   {{"source", s.calibration.windows_file.empty() ? in.train.path : s.calibration.windows_file}});

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
  if (!writes) {
    g_comm.reset();
    return 0;
  }
  const std::vector<app::ResultRow> rows = app::collect_rows(s.plan, runner);
  app::write_results(s.run.output, s.plan, rows, log);
  std::printf("\nPerplexity (WikiText-2 test) — %s\n\n%s\n", config_path.c_str(), app::results_table(s.plan, rows).c_str());
  std::printf("results: %s/results.{csv,json,md,png}\n", s.run.output.c_str());

  if (!exported.key.empty()) {
    const std::string shards = runner.shards_path(exported.key);
    const bool sharded = fs::exists(shards + "/model.safetensors.index.json");
    if (sharded) export_shards(shards, exported.dir);
    else export_hf(runner.model_at(exported.key), exported.dir);
    log.line("exported " + exported.cell + " to " + exported.dir +
             (sharded ? " (sharded safetensors + index + config.json)" : " (model.safetensors + config.json)"));
  }
  g_comm.reset();
  return 0;
} catch (const std::exception& e) {
  if (g_comm && g_comm->size() > 1) {
    std::fprintf(stderr, "error: %s: %s\n", g_comm->describe().c_str(), e.what());
    g_comm->abort(1);  // ends every rank
  }
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
