#include "nn/layer_norm.h"

#include "autograd/functions.h"

namespace pt::nn {

LayerNorm::LayerNorm(int64_t dim, double eps, Device device, DType dtype) : eps_(eps) {
  PT_CHECK(dim > 0 && eps > 0, "LayerNorm: dim (", dim, ") and eps (", eps, ") must be positive");
  weight = Variable(Tensor::ones({dim}, dtype, device), true);
  bias = Variable(Tensor::zeros({dim}, dtype, device), true);
  register_parameter("weight", &weight);
  register_parameter("bias", &bias);
}

Variable LayerNorm::forward(const Variable& x) const { return autograd::layer_norm(x, weight, bias, eps_); }

void LayerNorm::reset_parameters() {
  weight.data().fill_(1.0);
  bias.data().zero_();
}

}  // namespace pt::nn
