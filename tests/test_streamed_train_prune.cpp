// train_prune with [model] stream = on against stream = off, run as separate processes on a random model written
// by make_random_opt (sharded safetensors): the same table to the last digit, bit-identical stage checkpoints, a
// streamed prune stage's folder loadable as a Hugging Face model, memory peaks in every stage record and result
// row, a run killed mid-stage that finishes with the same table, and impossible settings refused before anything
// is written.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "nn/checkpoint.h"
#include "opt/hf_checkpoint.h"
#include "test_util.h"

namespace pt::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string data_dir() { return pt::test::source_dir() + "/data"; }
bool have_data() {
  return fs::exists(data_dir() + "/wikitext-2-tokens/wiki.train.tokens.part") && fs::exists(data_dir() + "/opt-tokenizer");
}

// Prune-only arms stream; the retraining arm runs in memory from the streamed stage's checkpoint.
std::string config(const std::string& weights, const std::string& out, const std::string& stream,
                   const std::string& extra = "") {
  return "[run]\ndevice = cpu\nseed = 0\noutput = " + out +
         "\n[experiment]\narms = sparsegpt:oneshot, wanda:oneshot, magnitude:oneshot, sparsegpt:retrain:full\n"
         "sparsities = 0.0, 0.5\n"
         "[model]\npreset = custom\nlayers = 3\nhidden = 32\nheads = 2\nffn = 64\ncontext = 32\ndropout = 0.0\n"
         "weights = " + weights + "\nstream = " + stream + "\n" +
         "[data]\ndir = " + data_dir() + "\ncache = " + pt::test::work_dir() + "/test-cache\ncalib_nsamples = 8\n"
         "calib_seqlen = 32\n[prune]\nblocksize = 16\nforward_batch = 3\n" + extra +
         "[retrain]\nsteps = 2\nbatch_size = 2\nseqlen = 32\n[eval]\nseqlen = 32\nbatch = 3\nwindows = 7\n";
}

class StreamedTrainPrune : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    if (!have_data()) GTEST_SKIP() << "no WikiText-2 / tokenizer under " << data_dir();
  }
  // make_random_opt's folder of a 3-layer model, in shards of about 1 MB.
  std::string write_model() {
    const std::string dir = path("model");
    const int code = wait_exit(spawn_process({app_dir() + "/make_random_opt", "--out", dir, "--layers", "3", "--hidden",
                                              "32", "--heads", "2", "--ffn", "64", "--context", "32", "--shard-mb", "1",
                                              "--seed", "5"},
                                             path("make.log")));
    EXPECT_EQ(code, 0) << read_text_file(path("make.log"));
    return dir;
  }
  int run(const std::string& ini_text, const std::string& name) {
    std::ofstream(path(name + ".ini")) << ini_text;
    return wait_exit(spawn_process({app_dir() + "/train_prune", "--config", path(name + ".ini"), "--no-progress"},
                                   path(name + ".log")));
  }
  static std::map<std::string, json> records(const std::string& out) {
    std::map<std::string, json> r;
    for (const auto& f : fs::directory_iterator(out + "/stages"))
      if (f.path().extension() == ".json") {
        const json j = json::parse(read_text_file(f.path().string()));
        r[j.at("key")] = j;
      }
    return r;
  }
};

TEST_F(StreamedTrainPrune, SameTableAndCheckpointsAsInMemoryAndAfterAKill) {
  const std::string model = write_model();
  ASSERT_GT(std::distance(fs::directory_iterator(model), fs::directory_iterator{}), 3);  // shards + index + config
  ASSERT_EQ(run(config(model, path("on"), "on"), "on"), 0) << read_text_file(path("on.log"));
  ASSERT_EQ(run(config(model, path("off"), "off"), "off"), 0) << read_text_file(path("off.log"));
  EXPECT_EQ(read_text_file(path("on/results.md")), read_text_file(path("off/results.md")));
  const json on = json::parse(read_text_file(path("on/results.json")));
  const json off = json::parse(read_text_file(path("off/results.json")));
  ASSERT_EQ(on.size(), 8u);
  for (size_t k = 0; k < on.size(); ++k) {
    EXPECT_EQ(on[k].at("perplexity"), off[k].at("perplexity")) << on[k].dump();
    EXPECT_EQ(on[k].at("measured_sparsity"), off[k].at("measured_sparsity")) << on[k].dump();
    EXPECT_GT(on[k].at("peak_host_rss_bytes").get<int64_t>(), 1000000) << on[k].dump();
    EXPECT_TRUE(on[k].contains("peak_device_bytes"));
  }
  const auto ron = records(path("on")), roff = records(path("off"));
  int streamed_prunes = 0;
  for (const auto& [key, rec] : ron) {
    EXPECT_GT(rec.at("peak_host_rss_bytes").get<int64_t>(), 0) << key;
    if (rec.at("kind") != "prune") continue;
    ++streamed_prunes;
    EXPECT_TRUE(rec.at("streamed").get<bool>()) << key;
    EXPECT_FALSE(roff.at(key).at("streamed").get<bool>()) << key;
    nn::LoadOptions lo;
    lo.load_optimizer = false;
    const nn::Checkpoint a = nn::load_checkpoint(path("on/stages/" + rec.at("id").get<std::string>() + ".h5"), lo);
    const nn::Checkpoint b = nn::load_checkpoint(path("off/stages/" + roff.at(key).at("id").get<std::string>() + ".h5"), lo);
    ASSERT_EQ(a.parameters.size(), b.parameters.size()) << key;
    for (size_t j = 0; j < a.parameters.size(); ++j) {
      EXPECT_EQ(a.parameters[j].first, b.parameters[j].first);
      EXPECT_TRUE(same_bytes(a.parameters[j].second, b.parameters[j].second)) << key << " " << a.parameters[j].first;
    }
    EXPECT_EQ(a.masks.size(), b.masks.size()) << key;
    for (const auto& [name, m] : b.masks) EXPECT_TRUE(same_bytes(a.masks.at(name), m)) << key << " mask " << name;
    // The stage's shards are a Hugging Face model (index + shards + config.json) holding the same weights.
    const opt::HfCheckpoint hf(path("on/stages/" + rec.at("id").get<std::string>() + ".hf"));
    for (const auto& [name, t] : b.parameters) {
      Tensor back = Tensor::empty(t.shape(), DType::f32);
      hf.read_into(name, back);
      EXPECT_TRUE(same_bytes(back, t)) << key << " " << name;
    }
  }
  EXPECT_EQ(streamed_prunes, 3);

  // kill -9 once the first pruned layer is on disk; the rerun resumes and writes the same table.
  const std::string killed = path("killed");
  std::ofstream(path("killed.ini")) << config(model, killed, "on");
  const int pid = spawn_process({app_dir() + "/train_prune", "--config", path("killed.ini"), "--no-progress"},
                                path("killed.log"));
  auto a_layer_is_done = [&] {
    if (!fs::exists(killed + "/stages")) return false;
    for (const auto& d : fs::directory_iterator(killed + "/stages"))
      if (d.path().extension() == ".hf" && fs::exists(d.path() / "model-00002-of-00004.safetensors")) return true;
    return false;
  };
  for (int i = 0; i < 20000 && !a_layer_is_done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  kill(pid, SIGKILL);
  wait_exit(pid);
  ASSERT_EQ(wait_exit(spawn_process({app_dir() + "/train_prune", "--config", path("killed.ini"), "--no-progress"},
                                    path("killed.log"))),
            0)
      << read_text_file(path("killed.log"));
  EXPECT_EQ(read_text_file(killed + "/results.md"), read_text_file(path("on/results.md")));
}

TEST_F(StreamedTrainPrune, ImpossibleSettingsAreOneLineAndWriteNothing) {
  struct Case {
    std::string weights, stream, extra, needle;
  };
  const std::vector<Case> cases = {
      {"random", "on", "", "[model] stream"},
      {path("no-such-model"), "on", "", "no-such-model"},
      {"random", "sometimes", "", "stream"},
      {"random", "off", "offload_activations = floppy\n", "offload_activations"},
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    const Case& c = cases[k];
    SCOPED_TRACE(c.needle);
    const std::string out = path("out" + std::to_string(k));
    EXPECT_EQ(run(config(c.weights, out, c.stream, c.extra), "bad" + std::to_string(k)), 1);
    const std::string log = read_text_file(path("bad" + std::to_string(k) + ".log"));
    EXPECT_NE(log.find(c.needle), std::string::npos) << log;
    EXPECT_FALSE(fs::exists(out)) << log;
  }
  // A retraining stage of a model that streams because it cannot fit (OPT-66B full: ~1.1 TB, more than any CI machine
  // has): refused with what would fit, before the run.
  const std::string tiny = write_model();
  std::ofstream(path("fit.ini")) << "[run]\ndevice = cpu\noutput = " + path("fit-out") +
                                        "\n[experiment]\narms = sparsegpt:retrain:full\nsparsities = 0.5\n"
                                        "[model]\npreset = 66b\nweights = " + tiny + "\nstream = on\n"
                                        "[data]\ndir = " + data_dir() + "\n";
  EXPECT_EQ(wait_exit(spawn_process({app_dir() + "/train_prune", "--config", path("fit.ini"), "--no-progress"},
                                    path("fit.log"))),
            1);
  EXPECT_NE(read_text_file(path("fit.log")).find("needs the whole model in memory"), std::string::npos)
      << read_text_file(path("fit.log"));
  EXPECT_NE(read_text_file(path("fit.log")).find("fits models up to about"), std::string::npos);
  EXPECT_FALSE(fs::exists(path("fit-out")));
  // make_random_opt refuses a shape it cannot write, and writes nothing.
  EXPECT_EQ(wait_exit(spawn_process({app_dir() + "/make_random_opt", "--out", path("bad-model"), "--hidden", "32",
                                     "--heads", "5"},
                                    path("bad-make.log"))),
            1);
  EXPECT_NE(read_text_file(path("bad-make.log")).find("--heads 5"), std::string::npos) << read_text_file(path("bad-make.log"));
  EXPECT_FALSE(fs::exists(path("bad-model")));
}

}  // namespace
}  // namespace pt::test
