// Validated INI configuration: every bad input is one error naming file:line, the key and what is allowed.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace pt::test
