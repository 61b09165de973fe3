#include "apps/train_prune/stage_identity.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "corpus/sha256.h"

namespace pt::app {

namespace fs = std::filesystem;

namespace {

// Keys of a section that do not change a stage's result (see the header).
const std::map<std::string, std::set<std::string>> kIgnored = {
    {"model", {"weights", "pretrain_config", "stream"}},
    {"prune", {"offload_activations"}},
    {"retrain", {"scope", "checkpoint_every", "log_every", "eval_every"}},
};

// Keys added after stages were recorded, left out at their default value so those stages keep their identity.
const std::map<std::pair<std::string, std::string>, std::string> kOmittedAtDefault = {
    {{"prune", "statistics_sum"}, "running"},
};

void add_section(StageInputs& out, const RunFacts& facts, const std::string& section) {
  const auto ignored = kIgnored.find(section);
  for (const auto& e : facts.config) {
    if (e.section != section || (ignored != kIgnored.end() && ignored->second.count(e.key))) continue;
    const auto omitted = kOmittedAtDefault.find({e.section, e.key});
    if (omitted != kOmittedAtDefault.end() && omitted->second == e.value) continue;
    out.emplace_back("[" + section + "] " + e.key, e.value);
  }
}

void add_run_key(StageInputs& out, const RunFacts& facts, const std::string& key) {
  for (const auto& e : facts.config)
    if (e.section == "run" && e.key == key) out.emplace_back("[run] " + key, e.value);
}

}  // namespace

StageInputs stage_inputs(StageOp::Kind kind, const RunFacts& facts) {
  StageInputs in;
  in.emplace_back("[run] device", facts.device);
  for (const char* key : {"seed", "kernels", "linear_kernel"}) add_run_key(in, facts, key);
  add_section(in, facts, "kernels");  // only the families given a variant explicitly
  add_section(in, facts, "eval");
  in.emplace_back("test tokens sha256", facts.test_tokens_sha256);
  switch (kind) {
    case StageOp::Kind::dense:
      add_section(in, facts, "model");
      in.emplace_back("weights sha256", facts.weights_sha256);
      break;
    case StageOp::Kind::prune:
      add_section(in, facts, "prune");
      in.emplace_back("calibration windows sha256", facts.calibration_sha256);
      break;
    case StageOp::Kind::retrain:
      add_section(in, facts, "retrain");
      in.emplace_back("train tokens sha256", facts.train_tokens_sha256);
      break;
  }
  return in;
}

std::string inputs_text(const StageInputs& inputs) {
  std::string text;
  for (const auto& [name, value] : inputs) text += name + " = " + value + "\n";
  return text;
}

StageInputs inputs_from_text(const std::string& text) {
  StageInputs out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t eq = line.find(" = ");
    if (eq != std::string::npos) out.emplace_back(line.substr(0, eq), line.substr(eq + 3));
  }
  return out;
}

std::string stage_identity(const std::string& parent_identity, const std::string& key, const StageInputs& inputs) {
  return corpus::sha256_hex("parent " + parent_identity + "\nkey " + key + "\n" + inputs_text(inputs));
}

std::string describe_change(const StageInputs& recorded, const StageInputs& now) {
  std::map<std::string, std::string> before(recorded.begin(), recorded.end());
  for (const auto& [name, value] : now) {
    const auto it = before.find(name);
    if (it == before.end()) return name + " = " + value + " is new";
    if (it->second != value) return name + " was " + it->second + ", now " + value;
    before.erase(it);
  }
  if (!before.empty()) return before.begin()->first + " = " + before.begin()->second + " is gone";
  return "";
}

std::string weights_checksum(const std::string& weights) {
  if (weights.empty() || weights == "random") return "random";
  if (!fs::is_directory(weights)) return corpus::sha256_file_hex(weights);
  std::vector<std::string> names;
  for (const auto& f : fs::directory_iterator(weights)) {
    const std::string name = f.path().filename().string(), ext = f.path().extension().string();
    if (f.is_regular_file() && (ext == ".safetensors" || ext == ".json")) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  std::string listing;
  for (const auto& name : names) listing += name + " " + corpus::sha256_file_hex(weights + "/" + name) + "\n";
  return corpus::sha256_hex(listing);
}

}  // namespace pt::app
