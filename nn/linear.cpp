#include "nn/linear.h"

#include <cstring>

#include "autograd/functions.h"
#include "tensor/ops.h"

namespace pt::nn {

namespace {

// The bytes of a tensor on the CPU, contiguous: what "bit for bit" compares.
Tensor host_bytes(const Tensor& t) { return t.to(Device::cpu).contiguous(); }

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor ha = host_bytes(a), hb = host_bytes(b);
  return std::memcmp(ha.data_ptr(), hb.data_ptr(), ha.nbytes()) == 0;
}

std::vector<uint64_t> mask_to_bits(const Tensor& keep) {
  const Tensor k = host_bytes(keep);
  const uint8_t* p = k.data<uint8_t>();
  std::vector<uint64_t> bits(size_t((k.numel() + 63) / 64), 0);
  for (int64_t i = 0; i < k.numel(); ++i)
    if (p[i]) bits[size_t(i / 64)] |= uint64_t(1) << (i % 64);
  return bits;
}

Tensor bits_to_mask(const std::vector<uint64_t>& bits, const Shape& shape, Device device) {
  Tensor k = Tensor::empty(shape, DType::u8);
  uint8_t* p = k.data<uint8_t>();
  for (int64_t i = 0; i < k.numel(); ++i) p[i] = uint8_t((bits[size_t(i / 64)] >> (i % 64)) & 1);
  return k.to(device);
}

// Bytes that dropping `t` gives back: its whole storage, when nothing else holds it.
int64_t sole_owner_bytes(const Tensor& t) {
  return t.defined() && t.storage().use_count() == 1 ? int64_t(t.storage()->nbytes()) : 0;
}

}  // namespace

Linear::Linear(int64_t in_features, int64_t out_features, bool with_bias, Device device, DType dtype) {
  PT_CHECK(in_features > 0 && out_features > 0, "Linear: features must be positive, got in=", in_features,
           " out=", out_features);
  in_features_ = in_features;
  out_features_ = out_features;
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
  restore_dense_weight();
  PT_CHECK(keep.defined() && keep.dtype() == DType::u8 && keep.shape() == weight.shape(), "Linear::set_mask: mask ",
           keep.defined() ? keep.describe() : std::string("(undefined)"), " must be u8 with the weight's shape ",
           shape_str(weight.shape()));
  weight_mask = keep.to(weight.device()).contiguous();
  weight.data().copy_(pt::apply_mask(weight.data(), weight_mask));
  packed_.reset();
}

void Linear::clear_mask() {
  restore_dense_weight();
  weight_mask = Tensor();
  packed_.reset();
}

void Linear::set_packed_weight(std::shared_ptr<const sparse::PackedLinearWeight> packed) {
  restore_dense_weight();  // W comes back from the form being replaced
  if (packed) {
    PT_CHECK(packed->out_features() == out_features() && packed->in_features() == in_features() &&
                 packed->device() == weight.device(),
             "Linear::set_packed_weight: ", weight.name(), " is [", out_features(), ", ", in_features(), "] on ",
             device_name(weight.device()), ", the packed weight [", packed->out_features(), ", ",
             packed->in_features(), "] on ", device_name(packed->device()));
    PT_CHECK(!adapter_, "Linear::set_packed_weight: ", weight.name(), " has a ", adapter_->kind(),
             " adapter; merge or detach it first");
  }
  packed_ = std::move(packed);
}

int64_t Linear::release_dense_weight() {
  PT_CHECK(packed_, "Linear::release_dense_weight: ", weight.name(), " has no packed form to run it");
  if (released_) return 0;
  const Tensor& w = weight.data();
  // Something else holds W (the dense and masked forms multiply by it): freeing the layer's handle saves nothing.
  if (w.storage().use_count() > 1) return 0;
  // The packed form must give W back exactly, or a restore would change the model.
  if (!bitwise_equal(packed_->to_dense().to(w.dtype()), w)) return 0;
  const int64_t freed = sole_owner_bytes(w) + sole_owner_bytes(weight_mask);
  released_keep_bits_ = weight_mask.defined() ? mask_to_bits(weight_mask) : std::vector<uint64_t>();
  released_dtype_ = w.dtype();
  weight.data() = Tensor();
  weight_mask = Tensor();
  released_ = true;
  return freed;
}

void Linear::restore_dense_weight() {
  if (!released_) return;
  weight.data() = packed_->to_dense().to(released_dtype_).contiguous();
  if (!released_keep_bits_.empty())
    weight_mask = bits_to_mask(released_keep_bits_, {out_features_, in_features_}, weight.data().device());
  released_keep_bits_ = {};
  released_ = false;
}

void Linear::attach_adapter(std::shared_ptr<LinearAdapter> adapter) {
  PT_CHECK(adapter != nullptr, "Linear::attach_adapter: the adapter is null");
  PT_CHECK(!adapter_, "Linear::attach_adapter: ", weight.name(), " already has a ", adapter_->kind(),
           " adapter; merge or detach it first");
  restore_dense_weight();
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
