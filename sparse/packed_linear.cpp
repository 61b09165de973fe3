#include "sparse/packed_linear.h"

#include <type_traits>

#include "sparse/bitmap.h"
#include "sparse/cpu_avx512.h"
#include "sparse/cpu_isa.h"
#include "sparse/cpu_sparse_rows.h"
#include "sparse/csr.h"
#include "sparse/two_four.h"
#include "tensor/ops.h"

namespace pt::sparse {

namespace {

// Token counts the dense format's own AVX-512 kernel takes (sparse/cpu_avx512.h). One token stays on BLAS's
// sgemv, which streams W as fast; above 16, OpenBLAS's sgemm (which packs W per call, paid off as tokens grow)
// keeps the product, as before: the crossover above 16 is not measured.
constexpr int64_t kDenseOwnMinTokens = 2, kDenseOwnMaxTokens = 16;

// dense: the layer's own weight (zeros already in place), multiplied with BLAS / cuBLAS, or on an AVX-512 CPU
// for 2..16 tokens of f32 with this code base's register-blocked kernel, on W as stored.
class DenseWeight final : public PackedLinearWeight {
 public:
  DenseWeight(const Tensor& weight, DType dtype) : weight_(weight.to(dtype)) {
    out_ = weight.size(0);
    in_ = weight.size(1);
    device_ = weight.device();
  }
  Tensor forward(const Tensor& x, const Tensor& bias) const override {
    if (takes_own_kernel(x)) return forward_own_kernel(x, bias);
    const Tensor xc = x.dtype() == weight_.dtype() ? x : x.to(weight_.dtype());
    const Tensor b = bias.defined() ? bias.to(weight_.dtype()) : bias;
    Tensor y = linear(xc, weight_, b);
    return y.dtype() == x.dtype() ? y : y.to(x.dtype());
  }
  LinearKernel kernel() const override { return LinearKernel::dense; }
  int64_t stored_bytes() const override { return int64_t(weight_.nbytes()); }
  Tensor to_dense() const override { return weight_; }

 private:
  bool takes_own_kernel(const Tensor& x) const {
    if (device_ != Device::cpu || weight_.dtype() != DType::f32 || !weight_.is_contiguous()) return false;
    if (!x.defined() || x.dim() < 1 || x.size(-1) != in_ || in_ == 0) return false;
    const int64_t tokens = x.numel() / in_;
    return tokens >= kDenseOwnMinTokens && tokens <= kDenseOwnMaxTokens && cpu::active_isa() == cpu::Isa::avx512;
  }
  Tensor forward_own_kernel(const Tensor& x, const Tensor& bias) const {
    return packed_linear_forward(
        *this, DType::f32, x, bias, "dense_linear",
        [&](const auto* x2, auto* y, const auto* b, int64_t tokens) {
          if constexpr (std::is_same_v<std::remove_cvref_t<decltype(*x2)>, float>) {
            const Tensor scratch = Tensor::empty({cpu::dense_rows_scratch_floats(tokens, in_)}, DType::f32);
            cpu::dense_rows_avx512(x2, weight_.data<float>(), b, y, tokens, in_, out_, scratch.data<float>(),
                                   cpu::worth_threads(tokens * in_ * out_));
          }
        },
        [](const Tensor&, const Tensor&, const Tensor&) {});
  }

  Tensor weight_;  // shares storage with the layer's weight when the dtype matches
};

// masked: W⊙M formed on every call (one extra pass over W and M), then the dense product.
class MaskedWeight final : public PackedLinearWeight {
 public:
  MaskedWeight(const Tensor& weight, const Tensor& keep, DType dtype) : weight_(weight.to(dtype)), keep_(keep) {
    out_ = weight.size(0);
    in_ = weight.size(1);
    device_ = weight.device();
  }
  Tensor forward(const Tensor& x, const Tensor& bias) const override {
    const Tensor w = keep_.defined() ? apply_mask(weight_, keep_) : weight_;
    const Tensor xc = x.dtype() == w.dtype() ? x : x.to(w.dtype());
    const Tensor b = bias.defined() ? bias.to(w.dtype()) : bias;
    Tensor y = linear(xc, w, b);
    return y.dtype() == x.dtype() ? y : y.to(x.dtype());
  }
  LinearKernel kernel() const override { return LinearKernel::masked; }
  int64_t stored_bytes() const override {
    return int64_t(weight_.nbytes()) + (keep_.defined() ? int64_t(keep_.nbytes()) : 0);
  }
  Tensor to_dense() const override { return keep_.defined() ? apply_mask(weight_, keep_) : weight_; }

 private:
  Tensor weight_, keep_;
};

}  // namespace

const std::vector<std::string>& linear_kernel_names() {
  static const std::vector<std::string> names = {"dense", "masked", "csr", "bitmap", "2of4", "auto"};
  return names;
}

LinearKernel parse_linear_kernel(const std::string& name) {
  const auto& names = linear_kernel_names();
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return LinearKernel(i);
  std::string allowed;
  for (const auto& n : names) allowed += (allowed.empty() ? "" : "|") + n;
  PT_FAIL("linear kernel '", name, "' is not one of ", allowed);
}

std::string linear_kernel_name(LinearKernel kernel) { return linear_kernel_names().at(size_t(kernel)); }

DType default_packed_dtype(LinearKernel kernel, DType weight, Device device) {
  if (device == Device::cpu) return weight == DType::f64 ? DType::f64 : DType::f32;
  const bool tensor_cores = kernel == LinearKernel::bitmap || kernel == LinearKernel::two_four;
  if (tensor_cores && !is_half(weight)) return DType::bf16;
  return weight;
}

std::shared_ptr<PackedLinearWeight> pack_linear_weight(LinearKernel kernel, const Tensor& weight, const Tensor& keep,
                                                       DType dtype, const std::string& what) {
  PT_CHECK(weight.defined() && weight.dim() == 2 && is_floating(weight.dtype()), "pack_linear_weight(", what,
           "): the weight must be a 2-D float tensor, got ", weight.defined() ? weight.describe() : "(undefined)");
  PT_CHECK(!keep.defined() || (keep.dtype() == DType::u8 && keep.shape() == weight.shape()), "pack_linear_weight(",
           what, "): the mask must be u8 with the weight's shape ", shape_str(weight.shape()), ", got ",
           keep.describe());
  const Tensor k = keep.defined() ? keep.to(weight.device()).contiguous() : keep;
  // The dtypes each kernel computes in (checked here so a bad choice fails when packing, not mid-evaluation).
  const bool cpu = weight.device() == Device::cpu;
  const bool sparse_format = kernel == LinearKernel::csr || kernel == LinearKernel::bitmap || kernel == LinearKernel::two_four;
  if (sparse_format && cpu)
    PT_CHECK(dtype == DType::f32 || dtype == DType::f64, "pack_linear_weight(", what, "): ", linear_kernel_name(kernel),
             " values in ", dtype_name(dtype), " are not supported on cpu (allowed: f32, f64)");
  if ((kernel == LinearKernel::bitmap || kernel == LinearKernel::two_four) && !cpu)
    PT_CHECK(is_half(dtype), "pack_linear_weight(", what, "): ", linear_kernel_name(kernel), " values in ",
             dtype_name(dtype), " are not supported on cuda (allowed: f16, bf16: tensor cores)");
  if (kernel == LinearKernel::csr && !cpu)
    PT_CHECK(dtype == DType::f32 || is_half(dtype), "pack_linear_weight(", what, "): csr values in ",
             dtype_name(dtype), " are not supported on cuda (allowed: f32, f16, bf16)");
  switch (kernel) {
    case LinearKernel::dense:
      // The dense product uses W as stored: it must already be zero where the mask prunes.
      if (k.defined())
        PT_CHECK(sum_all(abs(sub(apply_mask(weight, k), weight))).item() == 0.0, "pack_linear_weight(", what,
                 "): dense: the weight has nonzero values where its mask is 0 (apply the mask first)");
      return std::make_shared<DenseWeight>(weight, dtype);
    case LinearKernel::masked: return std::make_shared<MaskedWeight>(weight, k, dtype);
    case LinearKernel::csr: return std::make_shared<CsrWeight>(weight, k, dtype);
    case LinearKernel::bitmap: return std::make_shared<BitmapWeight>(weight, k, dtype);
    case LinearKernel::two_four: return std::make_shared<TwoFourWeight>(weight, k, dtype, what);
    case LinearKernel::auto_select: break;
  }
  PT_FAIL("pack_linear_weight(", what, "): 'auto' chooses among the other kernels; use sparse::pack_fastest");
}

LinearInput prepare_linear_input(const Tensor& x, int64_t in, int64_t out, DType dtype, Device device,
                                 const char* op) {
  PT_CHECK(in > 0 && x.defined() && x.dim() >= 1 && x.size(-1) == in && is_floating(x.dtype()), op, ": input must be a float "
           "tensor [..., ", in, "], got ", x.defined() ? x.describe() : std::string("(undefined)"));
  PT_CHECK(x.device() == device, op, ": input is on ", device_name(x.device()), " but the weight is on ",
           device_name(device));
  LinearInput li;
  li.tokens = x.numel() / in;
  li.x2 = x.to(dtype).contiguous().reshape({li.tokens, in});
  li.out_shape = x.shape();
  li.out_shape.back() = out;
  return li;
}

Tensor prepare_linear_bias(const Tensor& bias, int64_t out, DType dtype, Device device, const char* op) {
  if (!bias.defined()) return bias;
  PT_CHECK(bias.dim() == 1 && bias.size(0) == out && is_floating(bias.dtype()), op, ": bias must be a float [", out,
           "], got ", bias.describe());
  return bias.to(device, dtype).contiguous();
}

Tensor finish_linear_output(const Tensor& y2, const LinearInput& li, DType dtype) {
  Tensor y = y2.reshape(li.out_shape);
  return y.dtype() == dtype ? y : y.to(dtype);
}

HostWeight host_weight(const Tensor& weight, const Tensor& keep, const char* op) {
  PT_CHECK(weight.defined() && weight.dim() == 2 && is_floating(weight.dtype()), op,
           ": the weight must be a 2-D float tensor, got ", weight.defined() ? weight.describe() : "(undefined)");
  HostWeight h;
  h.out = weight.size(0);
  h.in = weight.size(1);
  const Tensor w = weight.to(Device::cpu, DType::f64).contiguous();
  h.w.assign(w.data<double>(), w.data<double>() + w.numel());
  if (keep.defined()) {
    PT_CHECK(keep.dtype() == DType::u8 && keep.shape() == weight.shape(), op, ": the mask must be u8 ",
             shape_str(weight.shape()), ", got ", keep.describe());
    const Tensor k = keep.to(Device::cpu).contiguous();
    h.keep.assign(k.data<uint8_t>(), k.data<uint8_t>() + k.numel());
  } else {
    h.keep.assign(size_t(w.numel()), 1);
  }
  return h;
}

}  // namespace pt::sparse
