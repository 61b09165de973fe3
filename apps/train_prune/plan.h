// The experiment of a train_prune run as a plan: arms (method × schedule × retrain scope) over a list of
// sparsities, expanded into a chain of stages per (arm, sparsity). Stages are identified by the whole chain
// that produces them ("dense | prune sparsegpt unstructured 0.5 | retrain full"), so two arms that need the
// same model share one stage: the dense evaluation, SparseGPT one-shot at s as the start of prune-then-retrain
// at s, the first iterative stage, and so on. A stage's files are named after a hash of its key.
//
// Schedules (Prune and Tune, appendix A.1.1):
//   oneshot    prune the dense model to s
//   retrain    prune the dense model to s, then retrain once
//   iterative  prune to s1, retrain, prune to s2 (keeping every earlier zero), retrain, ... up to s
// Pruning to 0.0 is the identity (no stage), so at sparsity 0 the retraining arms retrain the dense model.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "config/ini_config.h"
#include "prune/sequential.h"
#include "train/scopes.h"

namespace pt::app {

enum class Schedule { oneshot, retrain, iterative };
const char* schedule_name(Schedule s);

struct Arm {
  prune::PruneMethod method = prune::PruneMethod::sparsegpt;
  Schedule schedule = Schedule::oneshot;
  train::RetrainScope scope = train::RetrainScope::none;  // none for oneshot
  std::string spec;   // as written: "sparsegpt:iterative:full"
  std::string label;  // table column: "SparseGPT iterative (full)"
};

struct StageOp {
  enum class Kind { dense, prune, retrain } kind = Kind::dense;
  double sparsity = 0;  // prune
  prune::PruneMethod method = prune::PruneMethod::sparsegpt;
  train::RetrainScope scope = train::RetrainScope::none;
  std::string describe(const std::string& pattern) const;
};

struct Stage {
  std::string key;      // the whole chain, human readable
  std::string id;       // 16 hex digits of sha256(key): file names
  std::string parent;   // key of the stage it starts from ("" for dense)
  StageOp op;
};

struct Cell {            // one (arm, sparsity) result: the last stage of its chain
  size_t arm = 0;
  double sparsity = 0;
  std::string stage_key;
  std::string prune_key;   // its last pruning stage ("" when none)
  std::string retrain_key; // its last retraining stage ("" when none)
};

struct Plan {
  std::vector<Arm> arms;
  std::vector<double> sparsities;
  std::string pattern;             // SparsityPattern::describe() of the pattern kind, e.g. "unstructured", "2:4"
  std::vector<Stage> stages;       // unique, in an order where every parent comes first
  std::vector<Cell> cells;         // arms × sparsities
  const Stage& stage(const std::string& key) const;
};

// "method:schedule[:scope]"; a bad spec is an error naming it and what is allowed.
Arm parse_arm(const std::string& spec, train::RetrainScope default_scope);
// The paper's five columns (Prune and Tune, Table 1).
std::vector<std::string> paper_arm_specs();
Plan make_plan(const std::vector<Arm>& arms, const std::vector<double>& sparsities, const std::string& pattern_kind);

}  // namespace pt::app
