// The parity check of one variant on one problem, ggml's test-backend-ops idea in this project's terms:
//   - fresh random arguments; the family's reference runs on plain CPU copies of them;
//   - the variant runs on `device` with every argument placed inside a larger allocation whose 256 bytes before and
//     after it hold a known sentinel pattern, its outputs (and everything it allocates while it runs) filled with
//     0xFF bytes (NaN in every float dtype, 255 in a u8 mask) so an element it never writes cannot pass;
//   - then: every sentinel intact, every input unchanged, no NaN where the reference has none, and every output
//     and in-place argument within the family's tolerance of the reference (masks exactly equal).
#pragma once
#include <string>
#include <vector>

#include "lab/lab_family.h"

namespace pt::lab {

struct ParityResult {
  std::vector<std::string> failures;  // one line each; empty = the variant matches the reference
  double worst_error = 0;             // the largest relative error over its float outputs
  bool ok() const { return failures.empty(); }
  std::string describe() const;
};

ParityResult check_parity(const LabFamily& lab, const std::string& variant, Device device, const kernels::Problem& p,
                          uint64_t seed);

// Arguments copied to `device`, each inside a guarded allocation (outputs poisoned instead of copied).
struct GuardedArgs {
  Args args;
  std::vector<Tensor> blocks;  // the whole allocations (u8), guards included, one per defined argument
  std::vector<size_t> arg_of;  // blocks[i] holds args[arg_of[i]]
};
GuardedArgs place_guarded(const Args& cpu, Device device);
// The names of the arguments whose guard bytes were overwritten.
std::vector<std::string> broken_guards(const GuardedArgs& g);
constexpr int64_t kGuardBytes = 256;

}  // namespace pt::lab
