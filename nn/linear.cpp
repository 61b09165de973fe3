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
  if (packed_) {
    PT_CHECK(!autograd::grad_enabled() || (!weight.requires_grad() && !x.requires_grad()), "Linear ", weight.name(),
             ": the forward would record a graph, but the layer runs a packed ",
             sparse::linear_kernel_name(packed_->kernel()), " weight for inference; evaluate under NoGradGuard, "
             "or clear the packed weight before training");
    return Variable(packed_->forward(x.data(), bias.defined() ? bias.data() : Tensor()));
  }
  // Pruned weights are stored as 0, so the product needs no mask; when recording a graph the mask still goes
  // in front of W so the pruned positions get exactly zero gradient (clipping and optimizers never see them).
  Variable w = weight;
  if (weight_mask.defined() && autograd::grad_enabled() && weight.requires_grad())
    w = autograd::apply_mask(weight, weight_mask);
  if (adapter_) w = adapter_->effective_weight(w, weight_mask);
  return autograd::linear(x, w, bias);
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
  packed_.reset();
}

void Linear::set_packed_weight(std::shared_ptr<const sparse::PackedLinearWeight> packed) {
  if (packed) {
    PT_CHECK(packed->out_features() == out_features() && packed->in_features() == in_features() &&
                 packed->device() == weight.device(),
             "Linear::set_packed_weight: ", weight.name(), " is ", shape_str(weight.shape()), " on ",
             device_name(weight.device()), ", the packed weight [", packed->out_features(), ", ",
             packed->in_features(), "] on ", device_name(packed->device()));
    PT_CHECK(!adapter_, "Linear::set_packed_weight: ", weight.name(), " has a ", adapter_->kind(),
             " adapter; merge or detach it first");
  }
  packed_ = std::move(packed);
}

void Linear::attach_adapter(std::shared_ptr<LinearAdapter> adapter) {
  PT_CHECK(adapter != nullptr, "Linear::attach_adapter: the adapter is null");
  PT_CHECK(!adapter_, "Linear::attach_adapter: ", weight.name(), " already has a ", adapter_->kind(),
           " adapter; merge or detach it first");
  {
    // Probe once, so an adapter made for another layer fails here, not deep inside a training step.
    autograd::NoGradGuard no_grad;
    auto mismatch = [&](const std::string& why) {
      PT_FAIL("Linear::attach_adapter: a ", adapter->kind(), " adapter does not fit ", weight.name(), " ",
              shape_str(weight.shape()), ": ", why);
    };
    Shape got;
    try {
      got = adapter->effective_weight(weight, weight_mask).shape();
    } catch (const Error& e) {
      mismatch(e.what());
    }
    if (got != weight.shape()) mismatch("its effective weight is " + shape_str(got));
  }
  std::vector<std::string> names;
  try {
    for (auto& [name, p] : adapter->named_parameters()) {
      register_parameter(name, p);
      names.push_back(name);
    }
  } catch (...) {
    for (auto& n : names) unregister_parameter(n);
    throw;
  }
  adapter_ = std::move(adapter);
  adapter_parameter_names_ = std::move(names);
  packed_.reset();
}

void Linear::merge_adapter() {
  PT_CHECK(adapter_, "Linear::merge_adapter: ", weight.name(), " has no adapter");
  {
    autograd::NoGradGuard no_grad;
    Tensor merged = adapter_->effective_weight(weight, weight_mask).data();
    // The adapters already give 0 where W is pruned, but possibly -0.0 (0 · negative); write +0.0.
    if (weight_mask.defined()) merged = pt::apply_mask(merged, weight_mask);
    weight.data().copy_(merged);
  }
  detach_adapter();
}

void Linear::detach_adapter() {
  for (auto& n : adapter_parameter_names_) unregister_parameter(n);
  adapter_parameter_names_.clear();
  adapter_.reset();
}

}  // namespace pt::nn
