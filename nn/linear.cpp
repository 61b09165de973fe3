#include "nn/linear.h"

#include "autograd/functions.h"
#include "tensor/ops.h"

namespace pt::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool with_bias, Device device, DType dtype) {
  PT_CHECK(in_features > 0 && out_features > 0, "Linear: features must be positive, got in=", in_features,
           " out=", out_features);
  weight = Variable(Tensor::zeros({out_features, in_features}, dtype, device), true);
  register_parameter("weight", &weight);
  if (with_bias) {
    bias = Variable(Tensor::zeros({out_features}, dtype, device), true);
    register_parameter("bias", &bias);
  }
  register_buffer("weight_mask", &weight_mask);
}

Variable Linear::forward(const Variable& x) const {
  if (input_observer) input_observer(x.data());
  // Pruned weights are stored as 0, so the product needs no mask; when recording a graph the mask still goes
  // in front of W so the pruned positions get exactly zero gradient (clipping and optimizers never see them).
  if (weight_mask.defined() && autograd::grad_enabled() && weight.requires_grad())
    return autograd::linear(x, autograd::apply_mask(weight, weight_mask), bias);
  return autograd::linear(x, weight, bias);
}

void Linear::init_normal(double std, Generator& gen) {
  weight.data() = Tensor::normal(weight.shape(), 0.0, std, gen, weight.dtype(), weight.device());
  if (bias.defined()) bias.data().zero_();
}

void Linear::set_mask(const Tensor& keep) {
  PT_CHECK(keep.defined() && keep.dtype() == DType::u8 && keep.shape() == weight.shape(), "Linear::set_mask: mask ",
           keep.defined() ? keep.describe() : std::string("(undefined)"), " must be u8 with the weight's shape ",
           shape_str(weight.shape()));
  weight_mask = keep.to(weight.device()).contiguous();
  weight.data().copy_(pt::apply_mask(weight.data(), weight_mask));
}

}  // namespace pt::nn
