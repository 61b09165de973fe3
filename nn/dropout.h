// Inverted dropout, active only in training mode. Each Dropout owns a seeded counter-based generator, so a
// run is reproducible and the generator state (seed, offset) can be checkpointed.
#pragma once
#include "nn/module.h"
#include "tensor/random.h"

namespace pt::nn {

class Dropout : public Module {
 public:
  explicit Dropout(double p, uint64_t seed = 0);

  // Identity in eval mode or when p == 0; otherwise zeroes with probability p and scales by 1/(1-p).
  Variable forward(const Variable& x);

  double p() const { return p_; }
  Generator& generator() { return gen_; }

 private:
  double p_;
  Generator gen_;
};

}  // namespace pt::nn
