// train_prune on 2 ranks (mpirun -np 2 --oversubscribe, MPI on the CPU) against 1 rank, run as separate processes
// the way a user runs them, on a random model written by make_random_opt: the same table (perplexities within
// 1e-6 relative), identical masks, the same loss curve, and rank 0 alone writing; then a rank killed mid-retraining
// ends the run in time without damaging anything, and reruns with 2 ranks (the same results as the uninterrupted
// run) and with 1 rank (a different number of ranks resumes too) finish it; with [prune] statistics_sum = exact a
// wider model's masks are identical too. Skipped without mpirun or MPI.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "dist/world.h"
#include "nn/checkpoint.h"
#include "test_util.h"

namespace pt::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string data_dir() { return pt::test::source_dir() + "/data"; }

std::string config(const std::string& weights, const std::string& out, const std::string& prune_on = "one_rank") {
  return "[run]\ndevice = cpu\nseed = 0\noutput = " + out +
         "\n[experiment]\narms = sparsegpt:retrain:full\nsparsities = 0.5\n"
         "[model]\npreset = custom\nlayers = 2\nhidden = 32\nheads = 2\nffn = 64\ncontext = 32\ndropout = 0.0\n"
         "weights = " + weights + "\n[data]\ndir = " + data_dir() + "\ncache = " + pt::test::work_dir() +
         "/test-cache\ncalib_nsamples = 8\ncalib_seqlen = 32\n[prune]\nblocksize = 16\nforward_batch = 3\n"
         "prune_on = " + prune_on + "\n[retrain]\nsteps = 3\nbatch_size = 3\nseqlen = 32\ncheckpoint_every = 2\n"
         "log_every = 1\n[eval]\nseqlen = 32\nbatch = 3\nwindows = 5\n";
}

class TrainPruneRanks : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    const std::string d = data_dir();
    if (!fs::exists(d + "/wikitext-2-tokens/wiki.train.tokens.part") || !fs::exists(d + "/opt-tokenizer"))
      GTEST_SKIP() << "no WikiText-2 / tokenizer under " << data_dir();
    if (dist::available_backends().find("MPI") == std::string::npos) GTEST_SKIP() << "this build has no MPI";
    if (std::system("command -v mpirun >/dev/null 2>&1") != 0) GTEST_SKIP() << "no mpirun (make deps installs it)";
    model_ = path("model");
    const int code = wait_exit(spawn_process({app_dir() + "/make_random_opt", "--out", model_, "--layers", "2",
                                              "--hidden", "32", "--heads", "2", "--ffn", "64", "--context", "32",
                                              "--seed", "11"},
                                             path("make.log")));
    ASSERT_EQ(code, 0) << read_text_file(path("make.log"));
  }
  // train_prune on `ranks` processes (mpirun for 2), ended by `timeout` after 60 s; the exit code. `sets`: --set
  // overrides (section.key=value).
  int run(int ranks, const std::string& ini_text, const std::string& name, const std::vector<std::string>& sets = {}) {
    std::ofstream(path(name + ".ini")) << ini_text;
    std::vector<std::string> args = {"/bin/sh", "-c", "exec timeout 60 \"$0\" \"$@\""};
    if (ranks > 1) {
      // One BLAS thread per rank: two ranks share two cores.
      for (const char* a : {"mpirun", "-np", "2", "--oversubscribe", "-x", "OPENBLAS_NUM_THREADS=1"})
        args.emplace_back(a);
      if (::getuid() == 0) args.emplace_back("--allow-run-as-root");
    }
    for (const std::string& a : {app_dir() + "/train_prune", std::string("--config"), path(name + ".ini"),
                                 std::string("--no-progress")})
      args.push_back(a);
    for (const std::string& kv : sets) args.insert(args.end(), {"--set", kv});
    return wait_exit(spawn_process(args, path(name + ".log")));
  }
  std::string log(const std::string& name) { return read_text_file(path(name + ".log")); }
  static json results(const std::string& out) { return json::parse(read_text_file(out + "/results.json")); }
  // The stages of `out` whose key contains `only` (all by default).
  static std::map<std::string, nn::Checkpoint> stages(const std::string& out, const std::string& only = "") {
    std::map<std::string, nn::Checkpoint> m;
    nn::LoadOptions lo;
    lo.load_optimizer = false;
    for (const auto& f : fs::directory_iterator(out + "/stages"))
      if (f.path().extension() == ".json") {
        const json j = json::parse(read_text_file(f.path().string()));
        if (j.at("key").get<std::string>().find(only) == std::string::npos) continue;
        m[j.at("key")] = nn::load_checkpoint(out + "/stages/" + j.at("id").get<std::string>() + ".h5", lo);
      }
    return m;
  }
  static std::set<std::string> files(const std::string& out) {
    std::set<std::string> s;
    for (const auto& f : fs::recursive_directory_iterator(out)) s.insert(fs::relative(f.path(), out).string());
    return s;
  }
  // The losses of the "train step S/N: loss X" lines of a run's log.
  static std::vector<double> losses(const std::string& out) {
    std::vector<double> v;
    std::istringstream in(read_text_file(out + "/train_prune.log"));
    for (std::string line; std::getline(in, line);)
      if (const auto at = line.find(": loss "); line.find("train step") != std::string::npos && at != std::string::npos)
        v.push_back(std::stod(line.substr(at + 7)));
    return v;
  }
  static void expect_same_table(const std::string& a, const std::string& b, double rel) {
    const json ra = results(a), rb = results(b);
    ASSERT_EQ(ra.size(), rb.size());
    for (size_t k = 0; k < ra.size(); ++k) {
      const double pa = ra[k].at("perplexity").get<double>(), pb = rb[k].at("perplexity").get<double>();
      EXPECT_NEAR(pb, pa, rel * pa) << ra[k].dump();
      EXPECT_EQ(rb[k].at("measured_sparsity"), ra[k].at("measured_sparsity")) << ra[k].dump();
    }
  }
  static void expect_same_masks(const std::string& a, const std::string& b, const std::string& only = "") {
    const auto sa = stages(a, only), sb = stages(b, only);
    ASSERT_EQ(sa.size(), sb.size());
    int masks = 0;
    for (const auto& [key, ck] : sa) {
      ASSERT_TRUE(sb.count(key)) << key;
      ASSERT_EQ(sb.at(key).masks.size(), ck.masks.size()) << key;
      for (const auto& [name, m] : ck.masks) {
        EXPECT_TRUE(same_bytes(sb.at(key).masks.at(name), m)) << key << " mask " << name;
        ++masks;
      }
    }
    EXPECT_GT(masks, 0);
  }
  std::string model_;
};

TEST_F(TrainPruneRanks, TwoRanksGiveTheOneRankTableAndOnlyRankZeroWrites) {
  ASSERT_EQ(run(1, config(model_, path("one")), "one"), 0) << log("one");
  ASSERT_EQ(run(2, config(model_, path("two")), "two"), 0) << log("two");
  expect_same_table(path("one"), path("two"), 1e-6);
  expect_same_masks(path("one"), path("two"));
  const auto l1 = losses(path("one")), l2 = losses(path("two"));
  ASSERT_EQ(l1.size(), 3u);  // 3 steps, each logged once: rank 1 wrote no line
  ASSERT_EQ(l2.size(), l1.size());
  for (size_t s = 0; s < l1.size(); ++s)  // printed to 4 decimals
    EXPECT_NEAR(l2[s], l1[s], 1.5e-4) << "step " << s + 1;
  EXPECT_EQ(files(path("two")), files(path("one")));  // nothing more (no second rank's files), nothing less
  EXPECT_NE(read_text_file(path("two/train_prune.log")).find("2 ranks (MPI)"), std::string::npos);

  // Every rank pruning every matrix itself gives the same table and masks as one rank each.
  ASSERT_EQ(run(2, config(model_, path("every"), "every_rank"), "every"), 0) << log("every");
  expect_same_table(path("two"), path("every"), 0.0);
  expect_same_masks(path("two"), path("every"));
  EXPECT_NE(run(1, config(model_, path("bad"), "some_ranks"), "bad"), 0);
  EXPECT_NE(log("bad").find("prune_on"), std::string::npos) << log("bad");
  EXPECT_FALSE(fs::exists(path("bad/results.json")));
}

// [prune] statistics_sum = exact (prune/exact_sum.h) on a wider model (hidden 128, ffn 512, 16 windows of 64
// tokens), where the running average's 1- and 2-rank masks differ in a few entries (10 of 393216 on the development
// machine: bench/results/dist-cpu-2026-12-03/exact/): the same masks bit for bit and the same table, and streamed
// too. The 1-rank run has the default thread count, each of the 2 ranks one thread. A rerun with the running
// average into the same output does not take the exact stage for its own; a bad value is refused in one line.
TEST_F(TrainPruneRanks, ExactStatisticsGiveTheOneRankMasksOnAWiderModel) {
  const std::string wide = path("wide-model");
  ASSERT_EQ(wait_exit(spawn_process({app_dir() + "/make_random_opt", "--out", wide, "--layers", "2", "--hidden", "128",
                                     "--heads", "4", "--ffn", "512", "--context", "64", "--seed", "11"},
                                    path("wide.log"))),
            0)
      << read_text_file(path("wide.log"));
  const std::vector<std::string> sets = {
      "experiment.arms=sparsegpt:oneshot", "model.hidden=128", "model.heads=4", "model.ffn=512", "model.context=64",
      "data.calib_nsamples=16", "data.calib_seqlen=64", "eval.seqlen=64", "prune.statistics_sum=exact"};
  ASSERT_EQ(run(1, config(wide, path("exact-1")), "exact-1", sets), 0) << log("exact-1");
  ASSERT_EQ(run(2, config(wide, path("exact-2")), "exact-2", sets), 0) << log("exact-2");
  expect_same_table(path("exact-1"), path("exact-2"), 1e-6);
  expect_same_masks(path("exact-1"), path("exact-2"));
  // Streamed ([model] stream = on), the same masks again.
  std::vector<std::string> streamed = sets;
  streamed.push_back("model.stream=on");
  ASSERT_EQ(run(1, config(wide, path("exact-s")), "exact-s", streamed), 0) << log("exact-s");
  expect_same_masks(path("exact-1"), path("exact-s"), "prune");  // a streamed run keeps no dense checkpoint
  // The key is part of the prune stage's identity: the running average does not reuse the exact stage.
  std::vector<std::string> running = sets;
  running.back() = "prune.statistics_sum=running";
  EXPECT_NE(run(1, config(wide, path("exact-1")), "rerun-running", running), 0);
  EXPECT_NE(log("rerun-running").find("[prune] statistics_sum = exact is gone"), std::string::npos) << log("rerun-running");
  EXPECT_NE(run(1, config(wide, path("bad-sum")), "bad-sum", {"prune.statistics_sum=fast"}), 0);
  EXPECT_NE(log("bad-sum").find("statistics_sum"), std::string::npos) << log("bad-sum");
  EXPECT_NE(log("bad-sum").find("running, exact"), std::string::npos) << log("bad-sum");
  EXPECT_FALSE(fs::exists(path("bad-sum")));
}

TEST_F(TrainPruneRanks, AKilledRankEndsTheRunAndTheRerunsResumeWithTwoOrOneRank) {
  ASSERT_EQ(run(2, config(model_, path("straight")), "straight"), 0) << log("straight");
  ::setenv("PT_TEST_DIE_AT", "1:3", 1);  // rank 1: SIGKILL after retraining step 3 (step 2 is checkpointed)
  const int killed = run(2, config(model_, path("killed")), "killed");
  ::unsetenv("PT_TEST_DIE_AT");
  EXPECT_NE(killed, 0) << log("killed");
  EXPECT_NE(killed, 124) << "the run hung until timeout ended it\n" << log("killed");
  EXPECT_NE(log("killed").find("signal 9"), std::string::npos) << log("killed");  // mpirun names the dead rank
  for (const std::string& f : files(path("killed"))) EXPECT_EQ(f.find(".tmp"), std::string::npos) << f;
  EXPECT_FALSE(fs::exists(path("killed/results.json")));
  int partial = 0;  // the retraining checkpoint of step 2, complete
  for (const auto& f : fs::directory_iterator(path("killed/stages")))
    if (f.path().string().find(".train.h5") != std::string::npos) {
      EXPECT_EQ(nn::load_checkpoint(f.path().string()).step, 2);
      ++partial;
    }
  EXPECT_EQ(partial, 1);
  fs::copy(path("killed"), path("killed-1"), fs::copy_options::recursive);

  ASSERT_EQ(run(2, config(model_, path("killed")), "rerun-2"), 0) << log("rerun-2");
  EXPECT_NE(read_text_file(path("killed/train_prune.log")).find("at step 2"), std::string::npos);
  expect_same_table(path("straight"), path("killed"), 0.0);
  expect_same_masks(path("straight"), path("killed"));

  // One rank continues the 2-rank checkpoint (it holds the whole optimizer state): the same run within rounding.
  ASSERT_EQ(run(1, config(model_, path("killed-1")), "rerun-1"), 0) << log("rerun-1");
  EXPECT_NE(read_text_file(path("killed-1/train_prune.log")).find("at step 2"), std::string::npos);
  expect_same_table(path("straight"), path("killed-1"), 1e-5);
  expect_same_masks(path("straight"), path("killed-1"));
}

}  // namespace
}  // namespace pt::test
