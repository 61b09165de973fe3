// libFuzzer harness: the whole validation of a train_prune configuration, exactly as the program does it: the
// input is written as an INI file and train_prune's own main runs with --config FILE --dry-run (which reads and
// checks every section, builds the plan and prints it, and writes nothing). A bad configuration must end in the
// program's one-line error and exit code 1; a crash, a sanitizer report or an escaping exception is a finding.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/fuzz/input_file.h"

int train_prune_main(int argc, char** argv);  // apps/train_prune/main.cpp, compiled with -Dmain=train_prune_main

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args = {"train_prune", "--config", pt::fuzz::write_input_file(data, size, ".ini"),
                                   "--dry-run", "--no-progress"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int rc = train_prune_main(int(args.size()), argv.data());
  if (rc != 0 && rc != 1) __builtin_trap();  // 0: a valid plan; 1: one error line
  return 0;
}
