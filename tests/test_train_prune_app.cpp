// train_prune end to end on configs/smoke.ini (every schedule, every retraining scope, a tiny model pretrained
// first), run as a separate process the way a user runs it; then the table and the stage checkpoints are
// checked against what each arm promises. Also: killed runs finish with the same table, and bad
// configurations fail with one line and touch nothing.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "nn/checkpoint.h"
#include "opt/hf_checkpoint.h"
#include "test_util.h"

namespace pt::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
const std::string kSource = pt::test::source_dir();
const std::string kData = kSource + "/data";
// Launched lazily: a pt_tests run without the apps beside it fails only these cases, with the path in the message.
std::string app() { return app_dir() + "/train_prune"; }

bool have_data() { return fs::exists(kData + "/wikitext-2-tokens/wiki.train.tokens.part") && fs::exists(kData + "/opt-tokenizer"); }



// One smoke run shared by the checks below (it takes the better part of a minute).
class TrainPruneSmoke : public ::testing::Test {
 protected:
  // ctest runs every case in its own process, so the smoke run lives in the build tree and is shared: the
  // first process runs it (under a file lock), later ones rerun train_prune, which finds every stage complete
  // and only rewrites the table. A rebuilt train_prune starts the folder afresh.
  static void SetUpTestSuite() {
    if (!have_data()) return;
    dir_ = fs::path(pt::test::work_dir()) / "test-train-prune";
    fs::create_directories(dir_);
    const int lock = ::open((dir_.string() + ".lock").c_str(), O_RDWR | O_CREAT, 0644);
    ::lockf(lock, F_LOCK, 0);
    const std::string stamp = std::to_string(fs::file_size(app())) + " " +
                              std::to_string(fs::last_write_time(app()).time_since_epoch().count());
    if (read_text_file((dir_ / "binary.stamp").string()) != stamp) {
      fs::remove_all(dir_);
      fs::create_directories(dir_);
      std::ofstream(dir_ / "binary.stamp") << stamp;
    }
    // The tiny model's pretraining config, writing into the shared folder.
    std::string pre = read_text_file(kSource + "/configs/smoke-pretrain.ini");
    pre.replace(pre.find("output = runs/smoke-model"), 25, "output = " + (dir_ / "model").string());
    pre.replace(pre.find("dir = data"), 10, "dir = " + kData);
    std::ofstream(dir_ / "pretrain.ini") << pre;
    exit_code_ = wait_exit(spawn_process(base_args(dir_ / "run"), (dir_ / "run.log").string()));
    ::lockf(lock, F_ULOCK, 0);
    ::close(lock);
  }
  static std::vector<std::string> base_args(const fs::path& out) {
    return {app(), "--config", kSource + "/configs/smoke.ini", "--no-progress",
            "--set", "run.output=" + out.string(),
            "--set", "model.weights=" + (dir_ / "model/model.h5").string(),
            "--set", "model.pretrain_config=" + (dir_ / "pretrain.ini").string(),
            "--set", "data.dir=" + kData,
            "--set", "data.cache=" + pt::test::work_dir() + "/test-cache"};
  }
  // Reruns train_prune on the shared run folder (an export) under the suite's lock: ctest -j runs cases as parallel
  // processes, and two runs writing one folder would race on its files.
  static int rerun_shared(const std::vector<std::string>& args, const std::string& log) {
    const int lock = ::open((dir_.string() + ".lock").c_str(), O_RDWR | O_CREAT, 0644);
    ::lockf(lock, F_LOCK, 0);
    const int code = wait_exit(spawn_process(args, log));
    ::lockf(lock, F_ULOCK, 0);
    ::close(lock);
    return code;
  }
  void SetUp() override {
    if (!have_data()) GTEST_SKIP() << "no WikiText-2 / tokenizer under " << kData;
    ASSERT_EQ(exit_code_, 0) << read_text_file((dir_ / "run.log").string());
  }
  static json results() { return json::parse(read_text_file((dir_ / "run/results.json").string())); }
  // Every stage record of the run, by key.
  static std::map<std::string, std::string> stage_ids() {
    std::map<std::string, std::string> ids;
    for (const auto& f : fs::directory_iterator(dir_ / "run/stages"))
      if (f.path().extension() == ".json") {
        const json j = json::parse(read_text_file(f.path().string()));
        ids[j.at("key")] = j.at("id");
      }
    return ids;
  }
  static nn::Checkpoint stage(const std::string& key) {
    const auto ids = stage_ids();
    auto it = ids.find(key);
    EXPECT_NE(it, ids.end()) << "no stage " << key;
    nn::LoadOptions lo;
    lo.load_optimizer = false;
    return nn::load_checkpoint((dir_ / "run/stages" / (it->second + ".h5")).string(), lo);
  }
  static std::map<std::string, Tensor> params(const nn::Checkpoint& ck) {
    std::map<std::string, Tensor> m;
    for (const auto& [n, t] : ck.parameters) m[n] = t;
    return m;
  }
  static inline fs::path dir_;
  static inline int exit_code_ = -1;
};

const char* kPrefix = "dense | prune ";

TEST_F(TrainPruneSmoke, WritesEveryOutputAndMeasuredSparsityEqualsTheTarget) {
  for (const char* f : {"results.csv", "results.json", "results.md", "train_prune.log", "calibration_windows.txt",
                        "config.resolved.ini"})
    EXPECT_TRUE(fs::exists(dir_ / "run" / f)) << f;
  const json rows = results();
  EXPECT_EQ(rows.size(), 12u * 3u);
  for (const auto& r : rows) {
    // Exact counts per matrix (floor(s * numel)); Wanda counts per output row (floor(s * 32) of each 32-wide
    // row of this tiny model, as the reference does), so its total can sit up to 1/32 below the target.
    const double tol = r.at("method") == "wanda" ? 1.0 / 32 : 2e-3;
    EXPECT_LE(r.at("measured_sparsity").get<double>(), r.at("target_sparsity").get<double>() + 1e-12) << r.dump();
    EXPECT_NEAR(r.at("measured_sparsity").get<double>(), r.at("target_sparsity").get<double>(), tol) << r.dump();
    EXPECT_GT(r.at("perplexity").get<double>(), 1.0);
  }
  const std::string md = read_text_file((dir_ / "run/results.md").string());
  EXPECT_NE(md.find("| 0.60 |"), std::string::npos);
  EXPECT_NE(md.find("SparseGPT retrain (mask-lora)"), std::string::npos);
}

TEST_F(TrainPruneSmoke, RetrainingWithScopeNoneLeavesPerplexityUnchanged) {
  std::map<double, double> oneshot, none;
  for (const auto& r : results()) {
    if (r.at("arm") == "SparseGPT oneshot") oneshot[r.at("target_sparsity")] = r.at("perplexity");
    if (r.at("arm") == "SparseGPT retrain (none)") none[r.at("target_sparsity")] = r.at("perplexity");
  }
  ASSERT_EQ(oneshot.size(), 3u);
  for (const auto& [s, p] : oneshot) EXPECT_EQ(none.at(s), p) << "sparsity " << s;
}

TEST_F(TrainPruneSmoke, IterativeMasksKeepEveryEarlierZero) {
  const std::string first = std::string(kPrefix) + "magnitude unstructured 0.3 | retrain full";
  const nn::Checkpoint a = stage(first), b = stage(first + " | prune magnitude unstructured 0.6 | retrain full");
  ASSERT_EQ(a.masks.size(), 12u);
  for (const auto& [name, keep_a] : a.masks) {
    const Tensor& keep_b = b.masks.at(name);
    int64_t zeros_b = 0;
    for (int64_t i = 0; i < keep_a.numel(); ++i) {
      if (keep_a.data<uint8_t>()[i] == 0) EXPECT_EQ(keep_b.data<uint8_t>()[i], 0) << name << " " << i;
      zeros_b += keep_b.data<uint8_t>()[i] == 0;
    }
    EXPECT_EQ(zeros_b, int64_t(0.6 * double(keep_a.numel()) + 1e-9)) << name;  // the new total, not 0.6 on top
  }
}

// Each PERP scope changes exactly its parameters; everything else is bit-identical to the pruned parent,
// and every pruned weight is exactly 0 after the (merged) retraining.
TEST_F(TrainPruneSmoke, ScopesTrainOnlyTheirParametersAndKeepZeros) {
  struct Case {
    std::string parent, scope;
    std::function<bool(const std::string&)> in_scope;
  };
  auto ends = [](const std::string& n, const std::string& s) { return n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0; };
  auto is_bias = [&](const std::string& n) { return ends(n, ".bias"); };
  auto is_ln = [](const std::string& n) { return n.find("layer_norm.") != std::string::npos; };
  auto is_lora_target = [&](const std::string& n) {
    return n.find(".layers.") != std::string::npos && ends(n, ".weight") && !is_ln(n);
  };
  const std::vector<Case> cases = {
      {"wanda unstructured 0.6", "biases", is_bias},
      {"magnitude unstructured 0.6", "layernorm", is_ln},
      {"sparsegpt unstructured 0.6", "biases+layernorm", [&](const std::string& n) { return is_bias(n) || is_ln(n); }},
      {"wanda unstructured 0.6", "lm_head", [](const std::string& n) { return n == "lm_head.weight"; }},
      {"sparsegpt unstructured 0.6", "mask-lora", is_lora_target},
      {"magnitude unstructured 0.6", "scale-lora", is_lora_target},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.scope);
    const std::string parent_key = std::string(kPrefix) + c.parent;
    const nn::Checkpoint parent = stage(parent_key), child = stage(parent_key + " | retrain " + c.scope);
    auto pp = params(parent), pc = params(child);
    int changed = 0;
    for (const auto& [name, t] : pc) {
      if (!pp.count(name)) {  // the untied head starts as a copy of the embedding
        ASSERT_EQ(name, "lm_head.weight");
        EXPECT_FALSE(same_bytes(t, pp.at("model.decoder.embed_tokens.weight")));
        ++changed;
        continue;
      }
      if (c.in_scope(name)) changed += !same_bytes(t, pp.at(name)) ? 1 : 0;
      else EXPECT_TRUE(same_bytes(t, pp.at(name))) << name << " is outside the scope but changed";
    }
    EXPECT_GT(changed, 0);
    for (const auto& [name, keep] : child.masks) {
      const Tensor& w = pc.at(name);
      for (int64_t i = 0; i < w.numel(); ++i)
        if (keep.data<uint8_t>()[i] == 0) ASSERT_EQ(w.data<float>()[i], 0.0f) << name << " " << i;
    }
  }
  // Trained-parameter counts are reported, and the parameter-efficient ones are a small fraction.
  for (const auto& r : results()) {
    if (r.at("schedule") == "oneshot" || r.at("scope") == "none") continue;
    EXPECT_GT(r.at("trained_parameters").get<int64_t>(), 0) << r.dump();
    if (r.at("scope") == "lm_head") EXPECT_EQ(r.at("trained_parameters").get<int64_t>(), 50272 * 32);  // V x E
    else if (r.at("scope") != "full") EXPECT_LT(r.at("trained_fraction").get<double>(), 0.05) << r.dump();
  }
}

TEST_F(TrainPruneSmoke, KilledRunsFinishWithTheSameTable) {
  const std::string reference = read_text_file((dir_ / "run/results.md").string());
  for (int delay_ms : {300, 1500}) {
    SCOPED_TRACE("killed after " + std::to_string(delay_ms) + " ms");
    const fs::path out = dir_ / ("killed" + std::to_string(delay_ms));
    fs::remove_all(out);
    const int pid = spawn_process(base_args(out), (out.string() + ".log"));
    for (int i = 0; i < 600 && !fs::exists(out / "stages"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    kill(pid, SIGKILL);
    wait_exit(pid);
    ASSERT_EQ(wait_exit(spawn_process(base_args(out), out.string() + ".log")), 0) << read_text_file(out.string() + ".log");
    EXPECT_EQ(read_text_file((out / "results.md").string()), reference);
  }
}

// --export-hf writes a cell's model the way transformers loads it: HF names, config.json, zeros kept.
TEST_F(TrainPruneSmoke, ExportsACellAsHuggingFaceSafetensors) {
  const fs::path out = dir_ / "export-sgpt";
  fs::remove_all(out);
  std::vector<std::string> args = base_args(dir_ / "run");
  for (const char* a : {"--export-hf", "SparseGPT oneshot@0.6", "--export-dir"}) args.push_back(a);
  args.push_back(out.string());
  ASSERT_EQ(rerun_shared(args, (dir_ / "export.log").string()), 0) << read_text_file((dir_ / "export.log").string());
  opt::HfCheckpoint hf(out.string());  // the project's own HF reader: config.json + model.safetensors
  const nn::Checkpoint st = stage(std::string(kPrefix) + "sparsegpt unstructured 0.6");
  EXPECT_EQ(hf.config().num_hidden_layers, 2);
  for (const auto& [name, t] : st.parameters) {
    Tensor back = Tensor::empty(t.shape(), DType::f32);
    hf.read_into(name, back);
    EXPECT_TRUE(same_bytes(back, t)) << name;
  }
  expect_error([&] {
    std::vector<std::string> bad = base_args(dir_ / "run");
    for (const char* a : {"--export-hf", "No such arm@0.6"}) bad.push_back(a);
    const std::string log = (dir_ / "export-bad.log").string();
    fs::remove(log);
    EXPECT_EQ(rerun_shared(bad, log), 1);  // it runs (and rewrites) the shared folder before it fails
    PT_FAIL(read_text_file(log));
  }, "no such cell");
}

// The lm_head cell's model has a head of its own: --export-hf writes tie_word_embeddings: false and
// lm_head.weight, and opt_eval on the export measures the perplexity the run measured (it used to evaluate
// that export with the embedding as its head).
TEST_F(TrainPruneSmoke, ExportedUntiedHeadEvaluatesAsInTheRun) {
  std::string arm;
  double run_ppl = 0;
  for (const auto& r : results())
    if (r.at("scope") == "lm_head" && std::abs(r.at("target_sparsity").get<double>() - 0.6) < 1e-9)
      arm = r.at("arm"), run_ppl = r.at("perplexity");
  ASSERT_FALSE(arm.empty()) << "no lm_head cell at 0.6";
  const fs::path out = dir_ / "export-lm-head";
  fs::remove_all(out);
  std::vector<std::string> args = base_args(dir_ / "run");
  for (const std::string& a : {std::string("--export-hf"), arm + "@0.6", std::string("--export-dir"), out.string()})
    args.push_back(a);
  const std::string export_log = (dir_ / "export-lm-head.log").string();
  ASSERT_EQ(rerun_shared(args, export_log), 0) << read_text_file(export_log);
  EXPECT_EQ(json::parse(read_text_file((out / "config.json").string())).at("tie_word_embeddings"), false);

  const std::string eval_log = (dir_ / "opt-eval-lm-head.log").string();
  fs::remove(eval_log);
  const std::vector<std::string> eval = {pt::test::work_dir() + "/opt_eval", "--model", out.string(), "--ppl",
                                         "--seqlen", "32", "--batch", "8", "--windows", "8", "--device", "cpu",
                                         "--data", kData, "--cache", pt::test::work_dir() + "/test-cache"};
  ASSERT_EQ(wait_exit(spawn_process(eval, eval_log)), 0) << read_text_file(eval_log);
  const std::string text = read_text_file(eval_log);
  const size_t at = text.find("perplexity ");
  ASSERT_NE(at, std::string::npos) << text;
  const double eval_ppl = std::stod(text.substr(at + 11));
  EXPECT_NEAR(eval_ppl / run_ppl, 1.0, 1e-4) << "opt_eval " << eval_ppl << " vs the run's " << run_ppl << "\n" << text;
}

// Evaluating on a sparse kernel changes how the product is computed, not what it is: the same cells run with
// [run] linear_kernel = bitmap (and csr) give the dense run's perplexities, and each stage records its kernel.
// The csr run also picks the mask family's unfused variant ([kernels] mask = unfused: the same masks by the same
// total order), which every stage record and results row names beside the other families' defaults.
TEST_F(TrainPruneSmoke, SparseKernelEvaluationGivesTheDensePerplexities) {
  std::map<std::string, double> dense;
  for (const auto& r : results())
    if (r.at("arm") == "SparseGPT oneshot" || r.at("arm") == "Magnitude oneshot")
      dense[r.at("arm").get<std::string>() + "@" + std::to_string(r.at("target_sparsity").get<double>())] = r.at("perplexity");
  ASSERT_EQ(dense.size(), 6u);
  for (const char* kernel : {"bitmap", "csr"}) {
    SCOPED_TRACE(kernel);
    const fs::path out = dir_ / (std::string("kernel-") + kernel);
    fs::remove_all(out);
    std::vector<std::string> args = base_args(out);
    const std::string mask_variant = std::string(kernel) == "csr" ? "unfused" : "reference";
    for (const std::string& a : {std::string("experiment.arms=sparsegpt:oneshot, magnitude:oneshot"), "run.linear_kernel=" + std::string(kernel)}) {
      args.push_back("--set");
      args.push_back(a);
    }
    if (mask_variant == "unfused") args.insert(args.end(), {"--set", "kernels.mask=unfused"});
    ASSERT_EQ(wait_exit(spawn_process(args, out.string() + ".log")), 0) << read_text_file(out.string() + ".log");
    const json rows = json::parse(read_text_file((out / "results.json").string()));
    ASSERT_EQ(rows.size(), 6u);
    for (const auto& r : rows) {
      const std::string cell = r.at("arm").get<std::string>() + "@" + std::to_string(r.at("target_sparsity").get<double>());
      EXPECT_NEAR(r.at("perplexity").get<double>(), dense.at(cell), 1e-5 * dense.at(cell)) << cell;
      EXPECT_EQ(r.at("kernels").at("mask"), mask_variant) << r.dump();
    }
    int sparse_stages = 0;
    for (const auto& f : fs::directory_iterator(out / "stages"))
      if (f.path().extension() == ".json") {
        const json j = json::parse(read_text_file(f.path().string()));
        if (j.at("kind") == "prune") {
          EXPECT_EQ(j.at("eval_kernel"), kernel) << j.dump();
          ++sparse_stages;
        }
        EXPECT_EQ(j.at("kernels").at("mask"), mask_variant) << j.dump();
        EXPECT_EQ(j.at("kernels").at("obs_sweep"), "reference") << j.dump();  // fused on the CPU: the loops
        EXPECT_EQ(j.at("kernels").at("adamw"), "fused") << j.dump();
        EXPECT_EQ(j.at("kernels").at("sparse_linear"), j.at("eval_kernel")) << j.dump();
      }
    EXPECT_EQ(sparse_stages, 4);
    const std::string log = read_text_file(out.string() + "/train_prune.log");
    EXPECT_NE(log.find(std::string("eval: ") + kernel + " on 12 pruned layers"), std::string::npos) << log;
    // Stage checkpoints store the pruned matrices compressed ([run] checkpoint_sparse, on by default).
    EXPECT_NE(log.find("its 12 pruned matrices take"), std::string::npos) << log;
  }
}

TEST_F(TrainPruneSmoke, BadConfigurationsFailWithOneLineAndTouchNothing) {
  const fs::path out = dir_ / "run";
  const std::string before = read_text_file((out / "results.md").string());
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"experiment.sparsities=0.5, 1.2", "1.2 is outside [0, 0.99]"},
      {"experiment.arms=sparsegpt:sometimes", "unknown schedule 'sometimes'"},
      {"experiment.arms=pruneall:oneshot", "unknown method 'pruneall'"},
      {"experiment.arms=sparsegpt:oneshot:full", "a oneshot arm does not retrain"},
      {"experiment.arms=sparsegpt:retrain:everything", "unknown scope 'everything'"},
      {"prune.pattern=2:4", "pattern 2:4 prunes exactly 0.5"},
      {"prune.pattern=5:4", "[prune] pattern = 5:4"},
      {"retrain.lr=-1", "[retrain] lr = -1: must be in [0, 10]"},
      {"retrain.scope=sideways", "[retrain] scope = sideways: expected one of"},
      {"eval.windows=many", "[eval] windows = many: expected an integer"},
      {"prune.colour=red", "unknown key 'colour' in [prune]"},
      {"data.calib_file=/nonexistent.txt", "[data] calib_file = /nonexistent.txt: no such file"},
      {"run.linear_kernel=sparse", "[run] linear_kernel = sparse: expected one of"},
      {"run.linear_kernel=2of4", "2of4 runs only 2:4-pruned weights"},
  };
  for (const auto& [setting, needle] : cases) {
    SCOPED_TRACE(setting);
    const std::string log = (dir_ / "bad.log").string();
    fs::remove(log);
    std::vector<std::string> args = base_args(out);
    args.push_back("--set");
    args.push_back(setting);
    EXPECT_EQ(wait_exit(spawn_process(args, log)), 1);
    const std::string text = read_text_file(log);
    EXPECT_NE(text.find(needle), std::string::npos) << text;
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  }
  EXPECT_EQ(read_text_file((out / "results.md").string()), before);
}

}  // namespace
}  // namespace pt::test
