// Pretraining a small OPT model from an INI file: the body of the `pretrain` program, also called by
// train_prune when a config's model is to be pretrained first ([model] pretrain_config).
#pragma once
#include <string>
#include <vector>

namespace pt::app {

// Trains (or resumes, or finds complete) the run of `config_path` with `overrides` ("section.key=value");
// returns the path of the finished model (OUTPUT/model.h5). dry_run prints the resolved configuration and
// the plan and returns without training.
std::string run_pretraining(const std::string& config_path, const std::vector<std::string>& overrides,
                            bool dry_run, bool show_progress);

}  // namespace pt::app
