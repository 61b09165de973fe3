// LoRA adapters that keep a pruned Linear layer sparse (PERP, arXiv 2312.15230: MaskLoRA and ScaleLoRA).
// Both learn a rank-r product B·A with lora_A [r, in] and lora_B [out, r] and fold it into the weight:
//   MaskLoRA:  W_eff = W + (alpha / r) · ((B·A) ⊙ M)    M = the keep-mask (no mask: plain LoRA)
//   ScaleLoRA: W_eff = W ⊙ (B·A)
// Either way W_eff is 0 wherever W is pruned, so merging (Linear::merge_adapter) keeps the sparsity that
// plain LoRA would destroy. Attach with Linear::attach_adapter; the names are PEFT's ("lora_A", "lora_B").
#pragma once
#include <cstdint>
#include <string>

#include "nn/linear.h"
#include "tensor/random.h"

namespace pt::nn {

// The low-rank pair both variants train: created on the target's device and dtype.
class LowRankAdapter : public LinearAdapter {
 public:
  int64_t rank() const { return lora_A.size(0); }
  Variable product() const;  // B·A [out, in]

  Variable lora_A;  // [r, in]
  Variable lora_B;  // [out, r]

 protected:
  LowRankAdapter(const Linear& target, int64_t rank, const char* kind);
};

class MaskLoraAdapter : public LowRankAdapter {
 public:
  // PEFT's default initialisation: A ~ U(-1/√in, 1/√in) (kaiming_uniform_ with a = √5), B = 0, so W_eff is
  // exactly W until B has been trained. scaling = alpha / rank.
  MaskLoraAdapter(const Linear& target, int64_t rank, double alpha, Generator& gen);

  Variable effective_weight(const Variable& weight, const Tensor& keep_mask) const override;
  std::string kind() const override { return "mask-lora"; }
  double scaling() const { return scaling_; }

 private:
  double scaling_;
};

class ScaleLoraAdapter : public LowRankAdapter {
 public:
  // A = B = 1/√r, so B·A is all ones: each entry sums r products 1/r. For r a power of 4 (1, 4, 16, 64, …)
  // 1/√r is a power of two and every step is exact, so W_eff == W bit for bit; other ranks are within fp32
  // rounding of it. No scaling: the product multiplies W.
  ScaleLoraAdapter(const Linear& target, int64_t rank);

  Variable effective_weight(const Variable& weight, const Tensor& keep_mask) const override;
  std::string kind() const override { return "scale-lora"; }
};

}  // namespace pt::nn
