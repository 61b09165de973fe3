// The project's side of `make compare` (scripts/compare.py drives it, bench/reference/ is the PyTorch side).
// A case is set up once from the driver's JSON params, then run() is timed over a number of iterations.
// run() returns values the driver checks against the PyTorch side (a loss, a sparsity); check() turns the
// last iteration's values into plain numbers after the loop (e.g. reads a device scalar once, not per step).
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "opt/config.h"
#include "tensor/device.h"
#include "tensor/dtype.h"

namespace pt::comparison {

using json = nlohmann::json;

class CompareCase {
 public:
  virtual ~CompareCase() = default;
  virtual json run() = 0;
  virtual json check(const json& last) { return last.is_null() ? json::object() : last; }
  json info = json::object();  // reported once after setup (parameter counts, the form used, ...)
};

using CaseFactory = std::function<std::unique_ptr<CompareCase>(const json& params, Device device)>;
using CaseRegistry = std::map<std::string, CaseFactory>;

// Each family adds its kinds (the same names as bench/reference's CASES).
void add_opt_cases(CaseRegistry& r);     // train_step, perplexity
void add_prune_cases(CaseRegistry& r);   // hessian, sparsegpt_matrix, wanda_matrix, magnitude_matrix, prune_model
void add_kernel_cases(CaseRegistry& r);  // adamw, matmul, sparse_linear

// Shared helpers.
int64_t param_int(const json& p, const char* key);  // required; a clear error naming the key when missing
DType param_dtype(const json& p, DType fallback);   // "dtype": "f32" | "bf16" | "f16"
// An OPT config from vocab, hidden, layers, ffn, heads, ctx (and dropout, default 0): HF's OPTConfig fields.
opt::OptConfig opt_config_from(const json& p);
std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed);  // uniform in [0, vocab)

}  // namespace pt::comparison
