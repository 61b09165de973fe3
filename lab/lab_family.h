// The kernel lab: how a kernel family (tensor/kernel_registry.h) is exercised. One LabFamily per family says which
// problems its variants run on (shape classes: small and odd sizes for the parity test, the project's sizes for the
// benchmark), how to make fresh arguments for a problem, and how to call a variant on them. From that, every
// registered variant is checked against the family's reference (lab/parity.h, tests/test_kernel_lab.cpp) and timed
// against the roofline (bench/bench_kernel_lab.cpp): the ggml idea of one case list feeding the test and the
// benchmark, with llm.c's numbered variants side by side.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tensor/kernel_registry.h"
#include "tensor/tensor.h"

namespace pt::lab {

// input: read only (checked unchanged); inout: updated in place; output: written in full (poisoned before the run).
enum class Role { input, inout, output };
struct Arg {
  std::string name;
  Role role = Role::input;
  Tensor t;  // undefined = not given (e.g. no previous mask)
};
using Args = std::vector<Arg>;

enum class Purpose { test, bench };

class LabFamily {
 public:
  virtual ~LabFamily() = default;
  virtual kernels::FamilyBase& family() const = 0;
  // Test problems are small (milliseconds on the CPU) and include odd sizes and every pattern of the family;
  // benchmark problems are the sizes the project runs on `device`.
  virtual std::vector<kernels::Problem> problems(Purpose purpose, Device device) const = 0;
  // Fresh random arguments for `p` on `device`, the same values on every device for the same seed (the
  // counter-based generator); outputs allocated (any contents).
  virtual Args make_args(const kernels::Problem& p, uint64_t seed, Device device) const = 0;
  // Runs `variant` on `args` (all on one device) and returns the tensors it returned, as outputs.
  virtual Args run(const std::string& variant, const kernels::Problem& p, const Args& args) const = 0;
  // The call the benchmark times: run() by default. A family whose variants have a one-time setup that real use
  // pays once (sparse_linear packs its weight once per model) does the setup here, outside the timed call.
  virtual std::function<Args()> timed_call(const std::string& variant, const kernels::Problem& p,
                                           const Args& args) const {
    return [this, variant, p, args] { return run(variant, p, args); };
  }
  // The largest error allowed in an output of `variant`, as max|got - reference| / max|reference|; 0 = exact.
  virtual double tolerance(const std::string& variant, const kernels::Problem& p, Device device) const;
};

// Every family of the project, with its lab (lab/catalog.cpp): the one list the config validation, the parity test
// and the benchmark iterate.
const std::vector<const LabFamily*>& lab_families();
std::vector<kernels::FamilyBase*> kernel_families();
kernels::FamilyBase* find_family(const std::string& name);  // null when there is none

// Helpers for the families' labs: a uniform random tensor in [lo, hi) (the same on every device), and problems.
Tensor random_uniform(const Shape& shape, uint64_t seed, Device device, double lo = -1.0, double hi = 1.0,
                      DType dtype = DType::f32);
kernels::Problem problem(std::string shape_class, std::vector<std::pair<std::string, int64_t>> dims,
                         std::string pattern = "", DType dtype = DType::f32);

}  // namespace pt::lab
