#include "nn/lora.h"

#include <cmath>

#include "autograd/functions.h"

namespace pt::nn {

namespace ag = autograd;

LowRankAdapter::LowRankAdapter(const Linear& target, int64_t rank, const char* kind) {
  PT_CHECK(rank >= 1, kind, " adapter for ", target.weight.name(), ": rank must be at least 1, got ", rank);
  const DType dtype = target.weight.dtype();
  const Device device = target.weight.device();
  lora_A = Variable(Tensor::zeros({rank, target.in_features()}, dtype, device), true);
  lora_B = Variable(Tensor::zeros({target.out_features(), rank}, dtype, device), true);
  register_parameter("lora_A", &lora_A);
  register_parameter("lora_B", &lora_B);
}

Variable LowRankAdapter::product() const { return ag::matmul(lora_B, lora_A); }

MaskLoraAdapter::MaskLoraAdapter(const Linear& target, int64_t rank, double alpha, Generator& gen)
    : LowRankAdapter(target, rank, "mask-lora"), scaling_(alpha / double(rank)) {
  PT_CHECK(std::isfinite(alpha), "mask-lora adapter for ", target.weight.name(), ": alpha must be finite, got ", alpha);
  const double bound = 1.0 / std::sqrt(double(target.in_features()));
  lora_A.data() = Tensor::uniform(lora_A.shape(), -bound, bound, gen, lora_A.dtype(), lora_A.device());
}

Variable MaskLoraAdapter::effective_weight(const Variable& weight, const Tensor& keep_mask) const {
  Variable delta = product();
  // Masking the update (not only the merge) is what makes training and merging agree: the pruned entries of
  // B·A never reach the forward, so they get no gradient and are not missed when the merge drops them.
  if (keep_mask.defined()) delta = ag::apply_mask(delta, keep_mask);
  return ag::add(weight, ag::mul_scalar(delta, scaling_));
}

ScaleLoraAdapter::ScaleLoraAdapter(const Linear& target, int64_t rank) : LowRankAdapter(target, rank, "scale-lora") {
  const double v = 1.0 / std::sqrt(double(rank));
  lora_A.data().fill_(v);
  lora_B.data().fill_(v);
}

Variable ScaleLoraAdapter::effective_weight(const Variable& weight, const Tensor& /*keep_mask*/) const {
  // W is already 0 where pruned, and a product keeps it 0: no mask needed.
  return ag::mul(weight, product());
}

}  // namespace pt::nn
