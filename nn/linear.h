// Linear layer in Hugging Face layout: weight [out, in], optional bias [out], y = x·Wᵀ + b.
// Pruning stores a u8 keep-mask in the buffer `weight_mask` [out, in] and writes zeros into the pruned
// weights, so the forward is the plain dense product; while a graph is recorded the mask also zeroes the
// gradient of the pruned weights, and the masked optimizer keeps their values at exactly zero.
#pragma once
#include <functional>

#include "nn/module.h"
#include "tensor/random.h"

namespace pt::nn {

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, Device device = Device::cpu,
         DType dtype = DType::f32);

  // x [..., in] -> [..., out]. Calls input_observer (if set) with x first. With a mask, dL/dW is 0 where
  // the mask is 0.
  Variable forward(const Variable& x) const;

  // Hugging Face's _init_weights: weight ~ N(0, std), bias = 0.
  void init_normal(double std, Generator& gen);

  // keep: u8 [out, in] (1 = kept). Stores the mask and zeroes every pruned weight in place.
  void set_mask(const Tensor& keep);
  void clear_mask() { weight_mask = Tensor(); }
  bool has_mask() const { return weight_mask.defined(); }

  int64_t in_features() const { return weight.size(1); }
  int64_t out_features() const { return weight.size(0); }

  Variable weight;      // [out, in]
  Variable bias;        // [out]; undefined without bias
  Tensor weight_mask;   // u8 [out, in]; undefined until pruned
  // Sees every forward input (e.g. to accumulate calibration statistics for SparseGPT / Wanda).
  std::function<void(const Tensor& input)> input_observer;
};

}  // namespace pt::nn
