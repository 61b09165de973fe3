// pretrain: trains an OPT-architecture model from random initialisation on WikiText-2 train tokens (OPT's
// tokenizer), with periodic test-split perplexity and checkpoints; rerunning the same command resumes.
//   ./pretrain --config configs/opt-mini-pretrain.ini
//   ./pretrain --config configs/opt-mini-pretrain.ini --set train.steps=100 --set run.output=runs/try
//   ./pretrain --config configs/opt-mini-pretrain.ini --dry-run
// Writes into [run] output: model.h5 (the final checkpoint: parameters, optimizer, metrics; what the pruning
// configs load), checkpoint.h5 while running, pretrain.json (summary), loss.csv, and loss.png (gnuplot).
#include <CLI/CLI.hpp>

#include <cstdio>

#include "apps/common/pretrain_run.h"

int main(int argc, char** argv) try {
  CLI::App cli{"Pretrain a small OPT model on WikiText-2 (train split) with test-split perplexity"};
  std::string config_path;
  std::vector<std::string> overrides;
  bool dry_run = false, no_progress = false;
  cli.add_option("--config", config_path, "INI file (see configs/opt-mini-pretrain.ini)")->required();
  cli.add_option("--set", overrides, "override a key: section.key=value (repeatable)");
  cli.add_flag("--dry-run", dry_run, "print the resolved configuration and the plan, then exit");
  cli.add_flag("--no-progress", no_progress, "plain log lines instead of progress bars");
  CLI11_PARSE(cli, argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // the plan and tables interleave with the log on stderr in order
  pt::app::run_pretraining(config_path, overrides, dry_run, !no_progress);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
