// Layer normalisation over the last dim with an affine weight (ones) and bias (zeros), as torch.nn.LayerNorm.
#pragma once
#include "nn/module.h"

namespace pt::nn {

class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5, Device device = Device::cpu, DType dtype = DType::f32);

  Variable forward(const Variable& x) const;  // x [..., dim] -> [..., dim]
  void reset_parameters();                    // weight = 1, bias = 0

  double eps() const { return eps_; }

  Variable weight;  // [dim]
  Variable bias;    // [dim]

 private:
  double eps_;
};

}  // namespace pt::nn
