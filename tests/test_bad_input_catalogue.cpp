// The bad-input catalogue: one case per kind of bad input found so far, each run the way a user runs the program,
// each asserting the project's promise about bad input:
//   - the program exits with a code other than 0 (and is not killed by a signal),
//   - stderr is exactly one line, and it names what is wrong (the file, key or value: the case's needles),
//   - a finished output folder that was there before is byte-identical afterwards (nothing added, removed or
//     changed: no config.resolved.ini of a run that never happened, no appended log line).
//
// Adding a case: append a row to kCases below. `folder` picks the finished run the program is pointed at (a copy
// of it, made fresh for the case: "train_prune" or "pretrain", or "" for none); `args` builds the command line
// and may write the bad input it needs under f.scratch; `needles` are substrings the error line must contain.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "test_util.h"

namespace pt::test {
namespace {

namespace fs = std::filesystem;
const std::string kSource = pt::test::source_dir();
const std::string kBinary = pt::test::work_dir();
const std::string kData = kSource + "/data";

bool have_data() {
  return fs::exists(kData + "/wikitext-2-tokens/wiki.train.tokens.part") && fs::exists(kData + "/opt-tokenizer");
}

// ---- the finished runs the cases start from ---------------------------------------------------------------

// A train_prune run small enough to finish in seconds: a random 1-layer model, a one-shot and a retraining arm.
std::string train_prune_config(const std::string& out) {
  return "[run]\ndevice = cpu\nseed = 0\noutput = " + out +
         "\n[experiment]\narms = magnitude:oneshot, magnitude:retrain:full\nsparsities = 0.5\n"
         "[model]\npreset = custom\nlayers = 1\nhidden = 16\nheads = 2\nffn = 32\ncontext = 16\ndropout = 0.0\n"
         "weights = random\n"
         "[data]\ndir = " + kData + "\ncache = " + kBinary + "/test-cache\ncalib_nsamples = 2\ncalib_seqlen = 16\n"
         "[prune]\nblocksize = 16\n"
         "[retrain]\nsteps = 2\nbatch_size = 2\nseqlen = 16\nlr = 0.001\ncheckpoint_every = 1\n"
         "[eval]\nseqlen = 16\nbatch = 8\nwindows = 2\n";
}

// A pretraining run of 4 steps of the same tiny model.
std::string pretrain_config(const std::string& out) {
  return "[run]\ndevice = cpu\nseed = 1\noutput = " + out +
         "\n[model]\npreset = custom\nlayers = 1\nhidden = 16\nheads = 2\nffn = 32\ncontext = 16\ndropout = 0.0\n"
         "[data]\ndir = " + kData + "\ncache = " + kBinary + "/test-cache\n"
         "[train]\nsteps = 4\nbatch_size = 2\nseqlen = 16\nlr = 0.001\nwarmup_steps = 1\ncheckpoint_every = 2\n"
         "eval_every = 0\n[eval]\nseqlen = 16\nbatch = 8\nwindows = 2\n";
}

struct Outcome {
  int exit_code = -1;  // 128 + signal when killed
  std::string out, err;
};

// Runs a program with stdout and stderr captured apart, in `cwd` when given.
Outcome run_program(const std::vector<std::string>& args, const std::string& capture, const std::string& cwd = "") {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const std::string out = capture + ".out", err = capture + ".err";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  EXPECT_EQ(rc, 0) << "cannot start " << args[0];
  Outcome o;
  o.exit_code = wait_exit(int(pid));
  o.out = read_text_file(out);
  o.err = read_text_file(err);
  return o;
}

// Makes the finished run `name` once per build of the programs (ctest runs every case in its own process, so
// the first one makes it under a file lock and the others reuse it); returns its folder.
fs::path finished_run(const std::string& name) {
  const fs::path root = fs::path(kBinary) / "test-bad-input";
  fs::create_directories(root);
  const int lock = ::open((root / (name + ".lock")).c_str(), O_RDWR | O_CREAT, 0644);
  ::lockf(lock, F_LOCK, 0);
  const fs::path dir = root / name, ini = root / (name + ".ini");
  std::string stamp;
  for (const char* app : {"train_prune", "pretrain"})
    stamp += std::to_string(fs::last_write_time(app_dir() + "/" + app).time_since_epoch().count()) + " ";
  if (read_text_file((root / (name + ".stamp")).string()) != stamp) {
    fs::remove_all(dir);
    std::ofstream(ini) << (name == "train_prune" ? train_prune_config(dir.string()) : pretrain_config(dir.string()));
    const Outcome o = run_program({app_dir() + "/" + name, "--config", ini.string(), "--no-progress"}, (root / name).string());
    EXPECT_EQ(o.exit_code, 0) << o.err;
    if (o.exit_code == 0) std::ofstream(root / (name + ".stamp")) << stamp;
  }
  ::lockf(lock, F_ULOCK, 0);
  ::close(lock);
  return dir;
}

// Every file and folder under `dir` with its bytes.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> files;
  if (!fs::exists(dir)) return files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string rel = fs::relative(e.path(), dir).string();
    files[rel] = e.is_directory() ? std::string("(folder)") : read_text_file(e.path().string());
  }
  return files;
}

// ---- the cases ----------------------------------------------------------------------------------------------

struct Fixture {
  std::string out;      // the copy of the finished run (its [run] output), or an empty scratch folder
  std::string ini;      // the INI file that made it (with `out` as its output)
  std::string scratch;  // a folder for the case's own files
  std::string program;  // the program's path
};

// The stage record (and so the file id) of a stage of the copied train_prune run, by its key.
nlohmann::json stage_record(const Fixture& f, const std::string& key) {
  for (const auto& e : fs::directory_iterator(f.out + "/stages"))
    if (e.path().extension() == ".json") {
      const auto j = nlohmann::json::parse(read_text_file(e.path().string()));
      if (j.at("key") == key) return j;
    }
  ADD_FAILURE() << "no stage " << key << " in " << f.out;
  return {};
}
std::string stage_file(const Fixture& f, const std::string& key, const std::string& ext) {
  return f.out + "/stages/" + stage_record(f, key).at("id").get<std::string>() + ext;
}
const char* kLeaf = "dense | prune magnitude unstructured 0.5 | retrain full";

std::string write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

// A copy of the data folder whose tokenizer vocabulary is damaged.
std::string data_with_bad_vocab(const Fixture& f) {
  const std::string dir = f.scratch + "/data";
  fs::create_directories(dir + "/opt-tokenizer");
  for (const char* sub : {"wikitext-2-raw", "wikitext-2-tokens"})
    if (fs::exists(kData + "/" + sub)) fs::create_directory_symlink(fs::canonical(kData + "/" + sub), dir + "/" + sub);
  fs::copy_file(kData + "/opt-tokenizer/merges.txt", dir + "/opt-tokenizer/merges.txt");
  write_file(dir + "/opt-tokenizer/vocab.json", "{\"a\": 0, \"b\": ");
  return dir;
}

// A copy of the tiny Hugging Face fixture (config.json + model.safetensors) to damage.
std::string hf_folder_copy(const Fixture& f, const std::string& name) {
  const std::string dir = f.scratch + "/" + name;
  fs::copy(pt::test::source_dir() + "/tests/golden/opt/tiny", dir, fs::copy_options::recursive);
  return dir;
}

void flip_byte_in_the_middle(const std::string& path) {
  std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
  const auto size = fs::file_size(path);
  io.seekg(std::streamoff(size / 2));
  char c = 0;
  io.get(c);
  io.seekp(std::streamoff(size / 2));
  io.put(char(c ^ 0x5a));
}

struct BadInputCase {
  std::string name;     // a gtest name: what is wrong
  std::string program;  // train_prune | pretrain | opt_eval
  std::string folder;   // the finished run to copy and point the program at: train_prune | pretrain | ""
  std::function<std::vector<std::string>(const Fixture&)> args;  // after the program's path
  std::vector<std::string> needles;
  friend void PrintTo(const BadInputCase& c, std::ostream* os) { *os << c.name; }
};

std::vector<std::string> with_sets(const Fixture& f, std::vector<std::string> sets) {
  std::vector<std::string> args = {"--config", f.ini, "--no-progress"};
  for (auto& s : sets) {
    args.push_back("--set");
    args.push_back(std::move(s));
  }
  return args;
}

const std::vector<BadInputCase> kCases = {
    // 2: a folder given as the INI file (it used to read as an empty file and start the default experiment)
    {"ConfigIsAFolder", "train_prune", "train_prune",
     [](const Fixture& f) { return std::vector<std::string>{"--config", f.scratch, "--set", "run.output=" + f.out}; },
     {"config ", "is a folder, not an INI file"}},
    // 3: a finished run rerun with other settings, data or a damaged checkpoint must not be reused silently
    {"RerunWithAnotherLearningRate", "train_prune", "train_prune",
     [](const Fixture& f) { return with_sets(f, {"retrain.lr=0.002"}); },
     {"retrain full", "[retrain] lr was 0.001, now 0.002"}},
    {"RerunWithMoreRetrainingSteps", "train_prune", "train_prune",
     [](const Fixture& f) { return with_sets(f, {"retrain.steps=3"}); }, {"[retrain] steps was 2, now 3"}},
    {"RerunWithAnotherSeed", "train_prune", "train_prune",
     [](const Fixture& f) { return with_sets(f, {"run.seed=5"}); }, {"stage 'dense'", "[run] seed was 0, now 5"}},
    {"RerunWithOtherTrainText", "train_prune", "train_prune",
     [](const Fixture& f) {
       std::string text;
       for (int i = 0; i < 40; ++i) text += " = Heading " + std::to_string(i) + " = \n The quick brown fox jumps over it .\n";
       return with_sets(f, {"data.train_path=" + write_file(f.scratch + "/train.txt", text)});
     },
     {"prune magnitude unstructured 0.5", "calibration windows sha256 was"}},
    {"RerunOverADamagedLeafCheckpoint", "train_prune", "train_prune",
     [](const Fixture& f) {
       flip_byte_in_the_middle(stage_file(f, kLeaf, ".h5"));
       return with_sets(f, {});
     },
     {".h5 of stage '", "is damaged: its sha256 differs"}},
    {"RerunOverATruncatedLeafCheckpoint", "train_prune", "train_prune",
     [](const Fixture& f) {
       const std::string h5 = stage_file(f, kLeaf, ".h5");
       fs::resize_file(h5, fs::file_size(h5) - 100);
       return with_sets(f, {});
     },
     {".h5 of stage '", "is damaged:", "bytes, but its record says"}},
    {"RerunOverAForeignMidStageCheckpoint", "train_prune", "train_prune",
     [](const Fixture& f) {
       // The leaf stage is unfinished, and the mid-stage checkpoint it would resume from is another stage's.
       const std::string h5 = stage_file(f, kLeaf, ".h5"), json = stage_file(f, kLeaf, ".json");
       fs::copy_file(stage_file(f, "dense | prune magnitude unstructured 0.5", ".h5"),
                     h5.substr(0, h5.size() - 3) + ".train.h5");
       fs::remove(h5);
       fs::remove(json);
       return with_sets(f, {});
     },
     {".train.h5 of stage '", "was made with other inputs"}},
    // 4: inputs that are only found bad when loaded must still stop the run before it writes anything
    {"DamagedTokenizer", "train_prune", "train_prune",
     [](const Fixture& f) { return with_sets(f, {"data.dir=" + data_with_bad_vocab(f)}); }, {"vocab.json"}},
    {"WeightsFileIsNotHdf5", "train_prune", "train_prune",
     [](const Fixture& f) { return with_sets(f, {"model.weights=" + write_file(f.scratch + "/w.h5", "not hdf5")}); },
     {"w.h5", "is truncated or corrupt"}},
    {"CalibrationFileWithAnIdOutsideTheVocabulary", "train_prune", "train_prune",
     [](const Fixture& f) {
       return with_sets(f, {"data.calib_file=" + write_file(f.scratch + "/calib.txt", "1 2 3 4\n5 6 99999999 8\n")});
     },
     {"calib.txt line 2", "99999999", "outside the vocabulary"}},
    {"PretrainRerunWithAnotherConfiguration", "pretrain", "pretrain",
     [](const Fixture& f) { return with_sets(f, {"train.lr=0.002"}); },
     {"model.h5 was made by another configuration"}},
    {"PretrainWithADamagedTokenizer", "pretrain", "pretrain",
     [](const Fixture& f) { return with_sets(f, {"data.dir=" + data_with_bad_vocab(f)}); }, {"vocab.json"}},
    // 6: a range with too many values (it used to allocate gigabytes, or convert an infinite count to an integer)
    // [kernels]: a family and one of its registered variants (tensor/kernel_registry.h), checked before anything runs.
    {"UnknownKernelVariant", "train_prune", "train_prune",
     [](const Fixture& f) { return with_sets(f, {"kernels.obs_sweep=fastest"}); },
     {"[kernels] obs_sweep = fastest", "has no variant 'fastest'", "registered: reference, unfused"}},
    {"UnknownKernelFamily", "train_prune", "train_prune",
     [](const Fixture& f) { return with_sets(f, {"kernels.obs_swep=unfused"}); },
     {"[kernels] obs_swep = unfused", "is not a kernel family", "obs_sweep, mask, adamw"}},
    {"RerunWithAnotherKernelVariant", "train_prune", "train_prune",
     [](const Fixture& f) { return with_sets(f, {"kernels.mask=unfused"}); }, {"[kernels] mask = unfused is new"}},
    {"PretrainWithAnUnknownKernelVariant", "pretrain", "pretrain",
     [](const Fixture& f) { return with_sets(f, {"kernels.adamw=turbo"}); },
     {"[kernels] adamw = turbo", "registered: reference, unfused, fused"}},
    {"SparsityRangeWithATinyStep", "train_prune", "train_prune",
     [](const Fixture& f) { return with_sets(f, {"experiment.sparsities=0:0.9:1e-12"}); },
     {"[experiment] sparsities = 0:0.9:1e-12", "at most 1000"}},
    {"SparsityRangeWithADenormalStep", "train_prune", "train_prune",
     [](const Fixture& f) { return with_sets(f, {"experiment.sparsities=0:0.9:1e-320"}); },
     {"[experiment] sparsities", "too many values", "at most 1000"}},
    // 7: a checkpoint whose shape is not the one [model] describes
    {"CustomModelWithACheckpointOfAnotherShape", "train_prune", "train_prune",
     [](const Fixture& f) {
       return with_sets(f, {"model.weights=" + stage_file(f, kLeaf, ".h5"), "model.hidden=32", "model.ffn=64"});
     },
     {"[model] weights = ", "hidden 16", "hidden 32"}},
    // 10: messages
    {"ExportCellWithABadSparsity", "train_prune", "train_prune",
     [](const Fixture& f) {
       auto a = with_sets(f, {});
       a.insert(a.end(), {"--export-hf", "Magnitude oneshot@abc"});
       return a;
     },
     {"--export-hf Magnitude oneshot@abc", "'abc' is not a number", "Magnitude oneshot"}},
    {"ExportCellThatIsNotInThePlan", "train_prune", "train_prune",
     [](const Fixture& f) {
       auto a = with_sets(f, {});
       a.insert(a.end(), {"--export-hf", "Wanda oneshot@0.5"});
       return a;
     },
     {"--export-hf Wanda oneshot@0.5: no such cell", "Magnitude retrain (full)"}},
    {"NulByteInTheConfig", "train_prune", "train_prune",
     [](const Fixture& f) {
       std::string text = read_text_file(f.ini);
       const size_t at = text.find("sparsities = 0.5") + 16;
       text.insert(at, std::string("\0, 0.9", 6));
       return std::vector<std::string>{"--config", write_file(f.scratch + "/nul.ini", text)};
     },
     {"nul.ini:", "NUL byte"}},
    {"TrainTextTooShortForCalibration", "train_prune", "train_prune",
     [](const Fixture& f) { return with_sets(f, {"data.train_path=" + write_file(f.scratch + "/short.txt", " = A = \n")}); },
     {"short.txt", "tokens, too few for"}},
    {"PretrainTextTooShortForTraining", "pretrain", "pretrain",
     [](const Fixture& f) { return with_sets(f, {"data.train_path=" + write_file(f.scratch + "/short.txt", " = A = \n")}); },
     {"short.txt", "tokens, too few for two training windows"}},
    // 1 and 10 through train_prune (test_bad_input_formats.cpp runs the whole set through opt_eval): a model
    // folder whose safetensors header nests 100,000 deep (it used to crash the error path), and a config.json
    // setting the model cannot honour (it used to surface as a missing tensor).
    {"ModelFolderWithADeeplyNestedHeader", "train_prune", "train_prune",
     [](const Fixture& f) {
       const std::string dir = hf_folder_copy(f, "nested");
       std::string header = R"({"w":{"dtype":"F32","shape":)" + std::string(100000, '[') + std::string(100000, ']') +
                            R"(,"data_offsets":[0,0]}})";
       std::string bytes(8, '\0');
       for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
       write_file(dir + "/model.safetensors", bytes + header);
       return with_sets(f, {"model.weights=" + dir});
     },
     {"model.safetensors: header: JSON nests deeper than 32 levels"}},
    {"ModelFolderWithLayerNormsWithoutAffine", "train_prune", "train_prune",
     [](const Fixture& f) {
       const std::string dir = hf_folder_copy(f, "no-affine");
       auto c = nlohmann::json::parse(read_text_file(dir + "/config.json"));
       c["layer_norm_elementwise_affine"] = false;
       write_file(dir + "/config.json", c.dump(2));
       return with_sets(f, {"model.weights=" + dir});
     },
     {"config.json: layer_norm_elementwise_affine = false", "is not supported"}},
    {"OptEvalModelFolderMissing", "opt_eval", "",
     [](const Fixture& f) { return std::vector<std::string>{"--model", f.scratch + "/no/such/folder", "--ppl"}; },
     {"--model ", "/no/such/folder: no such folder"}},
};

class BadInputCatalogue : public ::testing::TestWithParam<BadInputCase> {};

TEST_P(BadInputCatalogue, FailsWithOneLineAndTouchesNothing) {
  const BadInputCase& c = GetParam();
  if (!have_data()) GTEST_SKIP() << "no WikiText-2 / tokenizer under " << kData;
  const fs::path scratch = fs::path(kBinary) / "test-bad-input" / ("case-" + c.name + "-" + std::to_string(::getpid()));
  fs::remove_all(scratch);
  fs::create_directories(scratch / "own");
  Fixture f;
  f.scratch = (scratch / "own").string();
  f.out = (scratch / "out").string();
  f.program = app_dir() + "/" + c.program;
  if (!c.folder.empty()) {
    const fs::path finished = finished_run(c.folder);
    ASSERT_TRUE(fs::exists(finished)) << "the finished " << c.folder << " run is missing";
    fs::copy(finished, f.out, fs::copy_options::recursive);
    f.ini = write_file((scratch / "run.ini").string(),
                       c.folder == "train_prune" ? train_prune_config(f.out) : pretrain_config(f.out));
  } else {
    fs::create_directories(f.out);
  }
  std::vector<std::string> args = c.args(f);
  const auto before = snapshot(f.out);
  args.insert(args.begin(), f.program);
  const Outcome o = run_program(args, (scratch / "capture").string(), f.scratch);

  EXPECT_GT(o.exit_code, 0) << o.err;
  EXPECT_LT(o.exit_code, 128) << "killed by a signal: " << o.err;
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << "stderr is not one line:\n" << o.err;
  for (const auto& needle : c.needles) EXPECT_NE(o.err.find(needle), std::string::npos) << "no \"" << needle << "\" in: " << o.err;
  const auto after = snapshot(f.out);
  for (const auto& [path, bytes] : after) {
    const auto it = before.find(path);
    if (it == before.end()) ADD_FAILURE() << path << " was created in the output folder";
    else if (it->second != bytes) ADD_FAILURE() << path << " was changed in the output folder";
  }
  for (const auto& [path, bytes] : before)
    if (!after.count(path)) ADD_FAILURE() << path << " was removed from the output folder";
  if (!HasFailure()) fs::remove_all(scratch);
}

// The other side of "never reused silently": settings that change only where or how fast results are made
// (threads, checkpoint compression, log cadence) do not make a finished stage different, so a rerun with them
// changed reuses every stage and reports the same table.
TEST(BadInputCatalogueControl, ARerunWithOnlyStorageAndSpeedSettingsChangedReusesEveryStage) {
  if (!have_data()) GTEST_SKIP() << "no WikiText-2 / tokenizer under " << kData;
  const fs::path scratch = fs::path(kBinary) / "test-bad-input" / ("control-" + std::to_string(::getpid()));
  fs::remove_all(scratch);
  fs::create_directories(scratch);
  const fs::path out = scratch / "out";
  fs::copy(finished_run("train_prune"), out, fs::copy_options::recursive);
  const std::string ini = write_file((scratch / "run.ini").string(), train_prune_config(out.string()));
  const std::string table = read_text_file((out / "results.md").string());
  const Outcome o = run_program({app_dir() + "/train_prune", "--config", ini, "--no-progress", "--set", "run.threads=1", "--set",
                                 "run.checkpoint_gzip=1", "--set", "retrain.log_every=1"},
                                (scratch / "capture").string());
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(o.err.find("3 of 3 stages already complete"), std::string::npos) << o.err;
  EXPECT_EQ(o.err.find(" done: perplexity"), std::string::npos) << "a stage was recomputed:\n" << o.err;
  EXPECT_EQ(read_text_file((out / "results.md").string()), table);
  fs::remove_all(scratch);
}

INSTANTIATE_TEST_SUITE_P(Cases, BadInputCatalogue, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<BadInputCase>& info) { return info.param.name; });

}  // namespace
}  // namespace pt::test
