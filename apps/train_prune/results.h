// The table of a train_prune run: one row per arm × sparsity, written as results.csv, results.json,
// results.md (shaped like the paper's tables: rows sparsity, columns arms) and a plot of perplexity against
// sparsity on a log scale with one line per arm (results.png through gnuplot, like the paper's Figure 1).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "apps/common/run_log.h"
#include "apps/train_prune/plan.h"
#include "apps/train_prune/stage_runner.h"

namespace pt::app {

struct ResultRow {
  std::string arm, method, schedule, scope;
  double target_sparsity = 0, measured_sparsity = 0;
  double perplexity = 0;
  double prune_seconds = 0;    // the cell's last pruning stage
  double retrain_seconds = 0;  // the cell's last retraining stage
  double eval_seconds = 0;
  double total_seconds = 0;    // every stage of the cell's chain (shared stages counted in full)
  int64_t trained_parameters = 0, total_parameters = 0;
  double reconstruction_error = 0;  // last pruning stage (NaN if none)
  std::map<std::string, std::string> kernels;  // the variant of each kernel family the cell's last stage ran
  // The highest peaks of the stages of the cell's chain (each stage's are in its record).
  int64_t peak_host_rss_bytes = 0, peak_device_bytes = 0;
};

std::vector<ResultRow> collect_rows(const Plan& plan, StageRunner& runner);
// Writes results.{csv,json,md} and results.png (+ .gp) into `dir` (atomically for the text files).
void write_results(const std::string& dir, const Plan& plan, const std::vector<ResultRow>& rows, RunLog& log);
// The paper-shaped table (markdown): rows sparsity, columns arms, perplexity cells.
std::string results_table(const Plan& plan, const std::vector<ResultRow>& rows);

}  // namespace pt::app
