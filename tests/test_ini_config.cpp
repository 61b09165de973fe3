// Validated INI configuration: every bad input is one error naming file:line, the key and what is allowed.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "config/ini_config.h"
#include "test_util.h"

namespace pt::test {
namespace {

using config::IniConfig;

const char* kGood =
    "; a comment\n"
    "[run]\n"
    "device = cpu\n"
    "seed = 42   ; inline comment\n"
    "\n"
    "# another comment\n"
    "[prune]\n"
    "sparsities = 0.1, 0.5,0.0:0.4:0.2\n"
    "method = sparsegpt\n"
    "enabled = yes\n";

TEST(IniConfig, ReadsTypedValuesAndDefaults) {
  IniConfig c = IniConfig::from_string(kGood, "good.ini");
  EXPECT_EQ(c.choice("run", "device", "auto", {"auto", "cpu", "cuda"}), "cpu");
  EXPECT_EQ(c.integer("run", "seed", 0, 0, 100), 42);
  EXPECT_EQ(c.integer("run", "threads", 3, 0, 8), 3);  // default
  EXPECT_EQ(c.number_list("prune", "sparsities", "0.5", 0.0, 0.99), (std::vector<double>{0.1, 0.5, 0.0, 0.2, 0.4}));
  EXPECT_EQ(c.text("prune", "method", ""), "sparsegpt");
  EXPECT_TRUE(c.boolean("prune", "enabled", false));
  EXPECT_DOUBLE_EQ(c.number("prune", "lr", 1e-5, 0, 1), 1e-5);
  c.declare_sections({"run", "prune"});
  EXPECT_NO_THROW(c.finish());
  // The resolved text lists every key read, defaults included, and parses back to the same values.
  IniConfig back = IniConfig::from_string(c.resolved(), "resolved");
  EXPECT_EQ(back.integer("run", "threads", 0, 0, 8), 3);
  EXPECT_EQ(back.text("prune", "method", ""), "sparsegpt");
}

TEST(IniConfig, ErrorsNameFileLineKeyAndWhatIsAllowed) {
  auto with = [](const std::string& text) { return IniConfig::from_string(text, "x.ini"); };
  expect_error([&] { with("[run]\nseed = abc\n").integer("run", "seed", 0, 0, 10); },
               "x.ini:2: [run] seed = abc: expected an integer");
  expect_error([&] { with("[run]\n\nseed = 11\n").integer("run", "seed", 0, 0, 10); },
               "x.ini:3: [run] seed = 11: must be in [0, 10]");
  expect_error([&] { with("[run]\ndevice = tpu\n").choice("run", "device", "auto", {"auto", "cpu", "cuda"}); },
               "x.ini:2: [run] device = tpu: expected one of: auto, cpu, cuda");
  expect_error([&] { with("[r]\nlr = 1e-3x\n").number("r", "lr", 0, 0, 1); }, "x.ini:2: [r] lr = 1e-3x: expected a number");
  expect_error([&] { with("[r]\nlr = nan\n").number("r", "lr", 0, 0, 1); }, "expected a number");
  expect_error([&] { with("[r]\non = maybe\n").boolean("r", "on", false); }, "x.ini:2: [r] on = maybe: expected true or false");
  expect_error([&] { with("[p]\ns = 0.1, x\n").number_list("p", "s", "", 0, 1); }, "'x' is not a number");
  expect_error([&] { with("[p]\ns = 0.5:0.1:0.1\n").number_list("p", "s", "", 0, 1); }, "stop >= start");
  expect_error([&] { with("[p]\ns = 0.5, 1.5\n").number_list("p", "s", "", 0, 0.99); }, "1.5 is outside [0, 0.99]");
  expect_error([&] { with("[run]\nseed = 1\nseed = 2\n"); }, "x.ini:3: [run] seed is set twice (first at x.ini:2)");
  expect_error([&] { with("seed = 1\n"); }, "x.ini:1: key 'seed' appears before any [section]");
  expect_error([&] { with("[run]\nthis line has no equals sign\n"); }, "x.ini:2: cannot parse");
  expect_error([&] { IniConfig::from_file("/nonexistent/x.ini"); }, "config /nonexistent/x.ini: cannot open");
}

TEST(IniConfig, LongValuesContinueOnIndentedLinesAndOverlongLinesAreErrors) {
  IniConfig c = IniConfig::from_string("[e]\narms = a:b,\n  c:d,\n\te:f\nx = 1\n", "x.ini");
  EXPECT_EQ(c.text("e", "arms", ""), "a:b, c:d, e:f");
  EXPECT_EQ(c.integer("e", "x", 0, 0, 9), 1);
  expect_error([] { IniConfig::from_string("[e]\nv = " + std::string(300, '1') + "\n", "x.ini"); },
               "x.ini:2: line longer than");
}

TEST(IniConfig, UnknownSectionsAndKeysAreErrors) {
  IniConfig a = IniConfig::from_string("[run]\nseed = 1\nsede = 2\n", "x.ini");
  a.integer("run", "seed", 0, 0, 9);
  a.declare_sections({"run"});
  expect_error([&] { a.finish(); }, "x.ini:3: unknown key 'sede' in [run] (allowed: seed)");
  IniConfig b = IniConfig::from_string("[run]\nseed = 1\n[modle]\npreset = tiny\n", "x.ini");
  b.integer("run", "seed", 0, 0, 9);
  b.declare_sections({"run", "model"});
  expect_error([&] { b.finish(); }, "x.ini:3: unknown section [modle] (allowed: run, model)");
}

TEST(IniConfig, OverridesReplaceFileValuesAndAreNamedInErrors) {
  IniConfig c = IniConfig::from_string("[retrain]\nsteps = 10\n", "x.ini");
  c.apply_override("retrain.steps=20");
  c.apply_override("eval.windows = 4");
  EXPECT_EQ(c.integer("retrain", "steps", 0, 0, 100), 20);
  EXPECT_EQ(c.integer("eval", "windows", 0, 0, 100), 4);
  c.apply_override("retrain.steps=-1");
  expect_error([&] { c.integer("retrain", "steps", 0, 0, 100); }, "--set retrain.steps=-1: [retrain] steps = -1: must be in [0, 100]");
  expect_error([&] { c.apply_override("steps=3"); }, "expected section.key=value");
}

// A folder is not an INI file: fopen succeeds on it and fread fails, which used to read as an empty file (and so
// the default experiment ran).
TEST(IniConfig, AFolderIsRefusedByName) {
  const std::string dir = ::testing::TempDir() + "ini-config-folder-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  expect_error([&] { IniConfig::from_file(dir); }, "config " + dir + ": is a folder, not an INI file");
  std::filesystem::remove_all(dir);
}

// inih reads C strings: a NUL byte used to cut its line short without a word ("0.5\0, 0.9" read as "0.5").
TEST(IniConfig, ANulByteIsRefusedWithItsLine) {
  const std::string text = std::string("[e]\narms = a:b\nsparsities = 0.5") + '\0' + ", 0.9\n";
  expect_error([&] { IniConfig::from_string(text, "x.ini"); }, "x.ini:3: NUL byte");
  const std::string path = ::testing::TempDir() + "ini-config-nul-" + std::to_string(::getpid()) + ".ini";
  std::ofstream(path, std::ios::binary) << text;
  expect_error([&] { IniConfig::from_file(path); }, path + ":3: NUL byte");
  std::filesystem::remove(path);
}

// A range's values are counted before any is made: 0:0.9:1e-12 used to allocate gigabytes (bad_alloc), a
// denormal step made the count infinite (undefined behaviour converting it to an integer).
TEST(IniConfig, RangesWithTooManyValuesAreRefused) {
  auto list = [](const std::string& value) {
    return IniConfig::from_string("[p]\ns = " + value + "\n", "x.ini").number_list("p", "s", "", 0, 1);
  };
  ASSERT_EQ(list("0:0.999:0.001").size(), 1000u);  // the most allowed
  const std::string allowed = "at most 1000 are allowed";  // IniConfig::kMaxListValues
  std::vector<double> got;
  try {
    got = list("0:1:1e-4");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("x.ini:2: [p] s = 0:1:1e-4: range 0:1:1e-4 has 10001 values; " + allowed),
              std::string::npos) << e.what();
  }
  ASSERT_TRUE(got.empty()) << "a range of " << got.size() << " values was accepted";
  expect_error([&] { list("0:0.9:1e-12"); }, "has 9e+11 values; " + allowed);
  expect_error([&] { list("0:0.9:1e-320"); }, "has too many values; " + allowed);
  expect_error([&] { list("0:0.6:0.001, 0.6:0.99:0.0005"); }, allowed);  // the limit counts every part of the list
  std::string many;
  for (int i = 0; i < 1001; ++i) many += (i ? ", " : "") + std::to_string(i / 2000.0);
  IniConfig c = IniConfig::from_string("[p]\n", "x.ini");
  c.apply_override("p.s=" + many);  // no line-length limit on the command line
  expect_error([&] { c.number_list("p", "s", "", 0, 1); }, "lists more than 1000 values");
}

}  // namespace
}  // namespace pt::test
