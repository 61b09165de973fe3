#include "nn/dropout.h"

#include "autograd/functions.h"

namespace pt::nn {

Dropout::Dropout(double p, uint64_t seed) : p_(p), gen_(seed) {
  PT_CHECK(p >= 0.0 && p < 1.0, "Dropout: p = ", p, " is outside [0, 1)");
}

Variable Dropout::forward(const Variable& x) { return autograd::dropout(x, p_, gen_, is_training()); }

}  // namespace pt::nn
