// Numerical gradient check: compares the gradients backward() computes with central finite differences.
// The scalar probed is L = sum(fn(inputs) * R) for a fixed random R of the output's shape, so every
// output element contributes with its own weight (a wrong gradient cannot hide behind a plain sum).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "autograd/variable.h"

namespace pt::autograd {

struct GradcheckResult {
  bool ok = true;
  std::string message;  // on failure: input index, element, analytic vs numeric value
  explicit operator bool() const { return ok; }
};

using GradcheckFn = std::function<Variable(const std::vector<Variable>&)>;

// inputs: f64 CPU tensors (copied; the caller's are never modified). Each becomes a Variable that
// requires grad. An element fails when |analytic - numeric| > atol + rtol*|numeric|.
GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, double eps = 1e-6,
                          double atol = 1e-5, double rtol = 1e-4);

}  // namespace pt::autograd
