// Linear layer in Hugging Face layout: weight [out, in], optional bias [out], y = x·Wᵀ + b.
// Pruning stores a u8 keep-mask in the buffer `weight_mask` [out, in] and writes zeros into the pruned
// weights, so the forward is the plain dense product; while a graph is recorded the mask also zeroes the
// gradient of the pruned weights, and the masked optimizer keeps their values at exactly zero.
//
// Parameter-efficient retraining attaches a LinearAdapter (nn/lora.h): the forward then multiplies by the
// adapter's effective weight, a function of W, the mask and the adapter's own parameters, and merging makes
// that effective weight the layer's weight.
//
// Inference may use a packed form of the weight (CSR, bitmap, 2:4 …, sparse/packed_linear.h): while one is set
// and no graph is recorded, the forward runs its kernel instead of the dense product. The packed form is a
// snapshot, so anything that changes W or the mask (set_mask, adapters) drops it, and a forward that records a
// graph while it is set is an error rather than a silently stale product.
//
// A packed form that reproduces W bit for bit may also own the layer's memory: release_dense_weight() frees W and
// the u8 mask (the mask is kept as bits, 1/32 of an f32 weight), so a model evaluated on a sparse kernel really
// shrinks. While released, `weight` holds no data; anything that needs W again (clearing or replacing the packed
// form, set_mask, clear_mask, attach_adapter) first restores W and the mask from the packed form, exactly as they
// were, and the Module operations that read parameters (to, state_dict, load_state_dict) refuse with a clear
// error instead of reading nothing.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"
#include "sparse/packed_linear.h"
#include "tensor/random.h"

namespace pt::nn {

// A reparametrisation of a Linear layer's weight. Its parameters are registered in the adapter (by their short
// names, e.g. "lora_A") and, while it is attached, in the Linear too, so they appear in the model's
// named_parameters, state dict and checkpoints as "….q_proj.lora_A".
class LinearAdapter : public Module {
 public:
  // weight: W [out, in] (already masked when its gradient is recorded); keep_mask: the layer's u8 keep-mask,
  // or undefined for a dense layer. Returns the [out, in] weight the forward multiplies by.
  virtual Variable effective_weight(const Variable& weight, const Tensor& keep_mask) const = 0;
  virtual std::string kind() const = 0;  // for messages: "mask-lora", "scale-lora"
};

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, Device device = Device::cpu,
         DType dtype = DType::f32);

  // x [..., in] -> [..., out]. Calls input_observer (if set) with x first. With a mask, dL/dW is 0 where
  // the mask is 0. With an adapter, W is replaced by adapter->effective_weight(W, weight_mask).
  Variable forward(const Variable& x) const;

  // Hugging Face's _init_weights: weight ~ N(0, std), bias = 0.
  void init_normal(double std, Generator& gen);

  // keep: u8 [out, in] (1 = kept). Stores the mask and zeroes every pruned weight in place.
  void set_mask(const Tensor& keep);
  void clear_mask();
  bool has_mask() const { return weight_mask.defined(); }

  // Attaches an adapter (one at a time) and registers its parameters under this layer. Throws when one is
  // attached already, or when the adapter's effective weight does not have the weight's shape.
  void attach_adapter(std::shared_ptr<LinearAdapter> adapter);
  // Makes the effective weight permanent: W = effective_weight(W, mask) with every pruned entry rewritten as
  // +0.0, then detaches the adapter. The forward is unchanged by the merge. Call it outside autocast.
  void merge_adapter();
  // Detaches the adapter without touching W.
  void detach_adapter();
  bool has_adapter() const { return adapter_ != nullptr; }

  // Sets (or, with nullptr, clears) the packed form the forward uses for inference. Its shape must match W.
  void set_packed_weight(std::shared_ptr<const sparse::PackedLinearWeight> packed);
  const sparse::PackedLinearWeight* packed_weight() const { return packed_.get(); }
  LinearAdapter* adapter() const { return adapter_.get(); }

  // With a packed form set: frees the dense weight and the u8 mask, keeping the mask as bits, and returns the
  // bytes freed. Releases nothing (returns 0) when the packed form does not give W back bit for bit (values in
  // a narrower dtype), or when W's storage has another owner (the dense/masked forms share it), since freeing
  // would then save nothing.
  int64_t release_dense_weight();
  // Rebuilds W and the mask from the packed form and the kept bits (a no-op unless released).
  void restore_dense_weight();
  bool dense_weight_released() const { return released_; }

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

  Variable weight;      // [out, in]
  Variable bias;        // [out]; undefined without bias
  Tensor weight_mask;   // u8 [out, in]; undefined until pruned
  // Sees every forward input (e.g. to accumulate calibration statistics for SparseGPT / Wanda).
  std::function<void(const Tensor& input)> input_observer;

 private:
  std::shared_ptr<LinearAdapter> adapter_;
  std::shared_ptr<const sparse::PackedLinearWeight> packed_;
  std::vector<std::string> adapter_parameter_names_;  // registered on this layer while attached
  int64_t in_features_ = 0, out_features_ = 0;
  // While released: the keep-mask as bits (bit o·in + i set where kept; empty for a layer without a mask) and
  // W's dtype.
  bool released_ = false;
  std::vector<uint64_t> released_keep_bits_;
  DType released_dtype_ = DType::f32;
};

}  // namespace pt::nn
