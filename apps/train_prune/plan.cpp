#include "apps/train_prune/plan.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>

#include "corpus/sha256.h"
#include "tensor/error.h"

namespace pt::app {

const char* schedule_name(Schedule s) {
  switch (s) {
    case Schedule::oneshot: return "oneshot";
    case Schedule::retrain: return "retrain";
    case Schedule::iterative: return "iterative";
  }
  return "?";
}

std::string StageOp::describe(const std::string& pattern) const {
  char buf[128];
  switch (kind) {
    case Kind::dense: return "dense";
    case Kind::prune:
      std::snprintf(buf, sizeof buf, "prune %s %s %.4g", prune::prune_method_name(method), pattern.c_str(), sparsity);
      return buf;
    case Kind::retrain: return std::string("retrain ") + train::retrain_scope_name(scope);
  }
  return "?";
}

const Stage& Plan::stage(const std::string& key) const {
  for (const Stage& s : stages)
    if (s.key == key) return s;
  PT_FAIL("plan: no stage '", key, "'");
}

Arm parse_arm(const std::string& spec, train::RetrainScope default_scope) {
  std::vector<std::string> parts;
  std::stringstream ss(spec);
  std::string p;
  while (std::getline(ss, p, ':')) {
    const size_t a = p.find_first_not_of(" \t"), b = p.find_last_not_of(" \t");
    parts.push_back(a == std::string::npos ? "" : p.substr(a, b - a + 1));
  }
  const char* allowed = " (expected method:schedule[:scope] with method magnitude|wanda|sparsegpt, schedule "
                        "oneshot|retrain|iterative, scope none|full|biases|layernorm|biases+layernorm|lm_head|"
                        "mask-lora|scale-lora)";
  PT_CHECK(parts.size() == 2 || parts.size() == 3, "arm '", spec, "'", allowed);
  Arm arm;
  arm.spec = parts[0] + ":" + parts[1] + (parts.size() == 3 ? ":" + parts[2] : "");
  try {
    arm.method = prune::parse_prune_method(parts[0]);
  } catch (const Error&) {
    PT_FAIL("arm '", spec, "': unknown method '", parts[0], "'", allowed);
  }
  if (parts[1] == "oneshot") arm.schedule = Schedule::oneshot;
  else if (parts[1] == "retrain") arm.schedule = Schedule::retrain;
  else if (parts[1] == "iterative") arm.schedule = Schedule::iterative;
  else PT_FAIL("arm '", spec, "': unknown schedule '", parts[1], "'", allowed);
  if (arm.schedule == Schedule::oneshot) {
    PT_CHECK(parts.size() == 2 || parts[2] == "none", "arm '", spec, "': a oneshot arm does not retrain (drop the scope)");
    arm.scope = train::RetrainScope::none;
  } else {
    try {
      arm.scope = parts.size() == 3 ? train::parse_retrain_scope(parts[2]) : default_scope;
    } catch (const Error&) {
      PT_FAIL("arm '", spec, "': unknown scope '", parts[2], "'", allowed);
    }
  }
  static const std::map<prune::PruneMethod, const char*> names = {
      {prune::PruneMethod::magnitude, "Magnitude"}, {prune::PruneMethod::wanda, "Wanda"},
      {prune::PruneMethod::sparsegpt, "SparseGPT"}};
  arm.label = std::string(names.at(arm.method)) + " " + schedule_name(arm.schedule);
  if (arm.schedule != Schedule::oneshot) arm.label += std::string(" (") + train::retrain_scope_name(arm.scope) + ")";
  return arm;
}

std::vector<std::string> paper_arm_specs() {
  // Table 1's columns: Iter. SGPT, FT SGPT, SGPT 1-Shot, Mag. 1-Shot, Iter. Mag.
  return {"sparsegpt:iterative:full", "sparsegpt:retrain:full", "sparsegpt:oneshot", "magnitude:oneshot",
          "magnitude:iterative:full"};
}

Plan make_plan(const std::vector<Arm>& arms, const std::vector<double>& sparsities, const std::string& pattern) {
  Plan plan;
  plan.arms = arms;
  plan.sparsities = sparsities;
  plan.pattern = pattern;
  std::map<std::string, size_t> index;
  auto add = [&](const std::string& parent, const StageOp& op) {
    const std::string key = parent.empty() ? op.describe(pattern) : parent + " | " + op.describe(pattern);
    if (!index.count(key)) {
      index[key] = plan.stages.size();
      plan.stages.push_back({key, corpus::sha256_hex(key).substr(0, 16), parent, op});
    }
    return key;
  };
  const std::string dense = add("", StageOp{});
  std::vector<double> sorted = sparsities;
  std::sort(sorted.begin(), sorted.end());
  for (size_t a = 0; a < arms.size(); ++a) {
    const Arm& arm = arms[a];
    for (double s : sorted) {
      Cell cell{a, s, dense, "", ""};
      auto prune_to = [&](const std::string& from, double target) {
        if (target <= 0) return from;  // pruning to 0 is the identity
        StageOp op{StageOp::Kind::prune, target, arm.method, train::RetrainScope::none};
        cell.prune_key = add(from, op);
        return cell.prune_key;
      };
      auto retrain = [&](const std::string& from) {
        StageOp op{StageOp::Kind::retrain, 0, arm.method, arm.scope};
        cell.retrain_key = add(from, op);
        return cell.retrain_key;
      };
      std::string key = dense;
      switch (arm.schedule) {
        case Schedule::oneshot: key = prune_to(dense, s); break;
        case Schedule::retrain: key = retrain(prune_to(dense, s)); break;
        case Schedule::iterative:
          for (double step : sorted) {
            if (step > s) break;
            if (step <= 0 && s > 0) continue;  // the dense retrain belongs to the 0.0 cell only
            key = retrain(prune_to(key, step));
          }
          break;
      }
      cell.stage_key = key;
      plan.cells.push_back(cell);
    }
  }
  return plan;
}

}  // namespace pt::app
