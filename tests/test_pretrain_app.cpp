// The pretrain program end to end, as a user runs it: a killed run resumes to the same result as an
// uninterrupted one, and bad configurations fail with one clear line without touching earlier output.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "test_util.h"

namespace pt::test {
namespace {

namespace fs = std::filesystem;
const std::string kData = pt::test::source_dir() + "/data";
std::string pretrain_app() { return app_dir() + "/pretrain"; }

#define SKIP_WITHOUT_DATA()                                                                                  \
  if (!fs::exists(kData + "/wikitext-2-tokens/wiki.train.tokens.part") || !fs::exists(kData + "/opt-tokenizer")) \
  GTEST_SKIP() << "no WikiText-2 / tokenizer under " << kData << " (link ../shared/data there)"


// A config for a model small enough to train 16 steps in seconds (full OPT vocabulary: real tokens).
std::string tiny_config(const std::string& out) {
  return "[run]\ndevice = cpu\nseed = 3\noutput = " + out +
         "\n[model]\npreset = custom\nlayers = 1\nhidden = 32\nheads = 2\nffn = 64\ncontext = 32\ndropout = 0.1\n"
         "[data]\ndir = " + kData + "\ncache = " + pt::test::work_dir() + "/test-cache\n"
         "[train]\nsteps = 16\nbatch_size = 2\ngrad_accum = 2\nseqlen = 32\nlr = 3e-3\nwarmup_steps = 2\n"
         "checkpoint_every = 2\neval_every = 8\nlog_every = 4\n"
         "[eval]\nseqlen = 32\nbatch = 4\nwindows = 6\nperiodic_windows = 3\n";
}



int run(const std::vector<std::string>& args, const std::string& log) { return wait_exit(spawn_process(args, log)); }

class PretrainApp : public TempDirTest {};

TEST_F(PretrainApp, KilledRunsResumeToTheSameResult) {
  SKIP_WITHOUT_DATA();
  ASSERT_TRUE(fs::exists(pretrain_app())) << pretrain_app();
  const std::string ini_a = path("a.ini"), ini_b = path("b.ini");
  std::ofstream(ini_a) << tiny_config(path("a"));
  std::ofstream(ini_b) << tiny_config(path("a"));  // the same run_config text; only the file path differs
  ASSERT_EQ(run({pretrain_app(), "--config", ini_a, "--no-progress"}, path("a.log")), 0) << read_text_file(path("a.log"));
  const std::string reference = read_text_file(path("a/loss.csv"));
  ASSERT_NE(reference.find("\n16,"), std::string::npos) << reference;

  // Kill at several points (early, while checkpoints are being written, late), then let it finish.
  fs::rename(path("a"), path("reference"));
  for (int delay_ms : {100, 600}) {
    SCOPED_TRACE("killed after " + std::to_string(delay_ms) + " ms of training");
    const int pid = spawn_process({pretrain_app(), "--config", ini_b, "--no-progress"}, path("b.log"));
    // Wait for the first checkpoint (training is under way), then a little more, then SIGKILL.
    for (int i = 0; i < 600 && !fs::exists(path("a/checkpoint.h5")) && !fs::exists(path("a/model.h5")); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    kill(pid, SIGKILL);
    wait_exit(pid);
    // Whatever is on disk must load: a rerun resumes (or, if the kill came late, finds the run complete).
    ASSERT_EQ(run({pretrain_app(), "--config", ini_b, "--no-progress"}, path("b.log")), 0) << read_text_file(path("b.log"));
    EXPECT_EQ(read_text_file(path("a/loss.csv")), reference);
    fs::remove_all(path("a"));
  }
  EXPECT_NE(read_text_file(path("b.log")).find("resumed from"), std::string::npos);
}

// The end of a run is one commit: model.h5, which marks the run complete, appears only after loss.csv and
// pretrain.json are written. A folder in loss.csv's place makes that write fail: the run must stop with the
// run incomplete (it used to rename model.h5 into place first, exit 0 without loss.csv, and count as complete
// ever after), and once the obstacle is gone the rerun finishes with what an uninterrupted run writes.
TEST_F(PretrainApp, TheEndOfARunIsOneCommitWithTheCompletionMarkerLast) {
  SKIP_WITHOUT_DATA();
  const std::string ini = path("c.ini");
  std::ofstream(ini) << tiny_config(path("out"));
  const std::vector<std::string> cmd = {pretrain_app(), "--config", ini, "--no-progress", "--set", "train.steps=4"};
  ASSERT_EQ(run(cmd, path("ref.log")), 0) << read_text_file(path("ref.log"));
  const std::string reference_csv = read_text_file(path("out/loss.csv"));
  ASSERT_NE(reference_csv.find("\n4,"), std::string::npos) << reference_csv;
  fs::rename(path("out"), path("reference"));

  fs::create_directories(path("out/loss.csv"));
  EXPECT_NE(run(cmd, path("blocked.log")), 0) << read_text_file(path("blocked.log"));
  EXPECT_NE(read_text_file(path("blocked.log")).find("loss.csv"), std::string::npos) << read_text_file(path("blocked.log"));
  EXPECT_FALSE(fs::exists(path("out/model.h5"))) << "the run was marked complete before its outputs were written";
  EXPECT_TRUE(fs::exists(path("out/checkpoint.h5")));

  fs::remove(path("out/loss.csv"));
  ASSERT_EQ(run(cmd, path("rerun.log")), 0) << read_text_file(path("rerun.log"));
  EXPECT_TRUE(fs::exists(path("out/model.h5")));
  EXPECT_FALSE(fs::exists(path("out/checkpoint.h5")));
  EXPECT_EQ(read_text_file(path("out/loss.csv")), reference_csv);
  EXPECT_TRUE(fs::exists(path("out/pretrain.json")));
  for (const auto& e : fs::directory_iterator(path("out")))
    EXPECT_NE(e.path().extension(), ".tmp") << e.path() << " was left behind";
}

TEST_F(PretrainApp, BadConfigurationsFailWithOneLineAndTouchNothing) {
  SKIP_WITHOUT_DATA();
  fs::create_directories(path("out"));
  std::ofstream(path("out/model.h5")) << "precious";
  struct Case {
    std::string setting, needle;
  };
  const std::vector<Case> cases = {
      {"train.steps=-5", "[train] steps = -5: must be in [0, 100000000]"},
      {"train.lr=fast", "[train] lr = fast: expected a number"},
      {"run.device=tpu", "[run] device = tpu: expected one of: auto, cpu, cuda"},
      {"model.heads=3", "[model] heads = 3: must divide hidden (32)"},
      {"train.seqlen=64", "[train] seqlen = 64: must be in [2, 32]"},
      {"train.colour=blue", "unknown key 'colour' in [train]"},
      {"trian.steps=3", "unknown section [trian]"},
      {"data.dir=/nonexistent", "[data] dir = /nonexistent: no such folder"},
      {"model.weights=/nonexistent.h5", "[model] weights = /nonexistent.h5: no such file or folder"},
  };
  const std::string ini = path("c.ini");
  std::ofstream(ini) << tiny_config(path("out"));
  for (const auto& c : cases) {
    SCOPED_TRACE(c.setting);
    const std::string log = path("bad.log");
    fs::remove(log);
    EXPECT_EQ(run({pretrain_app(), "--config", ini, "--set", c.setting}, log), 1);
    const std::string out = read_text_file(log);
    EXPECT_NE(out.find(c.needle), std::string::npos) << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;  // one line
  }
  EXPECT_EQ(run({pretrain_app(), "--config", path("missing.ini")}, path("missing.log")), 1);
  EXPECT_NE(read_text_file(path("missing.log")).find("missing.ini: cannot open"), std::string::npos);
  EXPECT_EQ(read_text_file(path("out/model.h5")), "precious");
  EXPECT_EQ(std::distance(fs::directory_iterator(path("out")), fs::directory_iterator()), 1);
}

}  // namespace
}  // namespace pt::test
