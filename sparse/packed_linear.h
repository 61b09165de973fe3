// Inference-time forms of a pruned Linear weight, and the kernels that multiply by them.
//
// A pruned Linear keeps its dense weight W [out, in] (zeros where its u8 keep-mask is 0) for training. For
// inference it may also hold a *packed* copy of W in one of the formats below; the forward then runs that
// format's kernel, y = x·Wᵀ + b, instead of the dense product:
//
//   kernel   format (file)                              CPU                  CUDA
//   dense    the weight itself                          BLAS                 cuBLAS
//   masked   W and its mask, W⊙M formed each call       apply_mask + BLAS    apply_mask + cuBLAS
//            (what torch.nn.utils.prune does)
//   csr      CSR: row offsets, column indices, values   row walks over       cuSPARSE SpMM
//            (sparse/csr.h)                             token blocks
//   bitmap   per row, one 32-bit mask word per 32       row walks over       own kernels: a warp per row for
//            columns + the kept values                  token blocks         decode, "load sparse, expand in
//            (sparse/bitmap.h)                                               shared memory, multiply dense on
//                                                                            tensor cores" for prefill
//   2of4     2:4 compressed: the 2 kept values of       row walks over       own kernel on sparse tensor cores
//            every 4 inputs + 2-bit indices             token blocks         (mma.sp, sm_80+)
//            (sparse/two_four.h)
//   auto     the fastest of the above for the layer, measured when packing (sparse/auto_kernel.h)
//
// The CPU row walks (sparse/cpu_sparse_rows.h) take up to 16 tokens per walk of a row's indices, SIMD across the
// tokens. On a CPU with AVX-512 (chosen at run time, sparse/cpu_isa.h) the few-token products have their own f32
// kernels (sparse/cpu_avx512.h): dense at 2..16 tokens on W as stored (OpenBLAS's sgemm is slow that skinny),
// bitmap and 2of4 at one token (decode); everything else runs the portable loops and BLAS. Every format is built from the layer's keep-mask (not from W != 0), so a kept weight that happens to be 0
// is still stored, and every kernel computes exactly the masked-dense product up to summation order.
// Values are stored in a compute dtype chosen at packing (default_packed_dtype): the weight's dtype on the CPU;
// on CUDA bf16 for the tensor-core formats when the model is f32. Inputs are converted to that dtype, products
// accumulate in f32, and the result comes back in the input's dtype.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace pt::sparse {

enum class LinearKernel { dense, masked, csr, bitmap, two_four, auto_select };

// "dense" | "masked" | "csr" | "bitmap" | "2of4" | "auto"; anything else throws naming the allowed values.
LinearKernel parse_linear_kernel(const std::string& name);
std::string linear_kernel_name(LinearKernel kernel);
const std::vector<std::string>& linear_kernel_names();  // in the order above

// The dtype the packed values of `kernel` get for a weight of dtype `weight` on `device`.
DType default_packed_dtype(LinearKernel kernel, DType weight, Device device);

class PackedLinearWeight {
 public:
  virtual ~PackedLinearWeight() = default;
  // x [..., in] (any float dtype on the weight's device) -> [..., out] in x's dtype; bias [out] or undefined.
  virtual Tensor forward(const Tensor& x, const Tensor& bias) const = 0;
  virtual LinearKernel kernel() const = 0;
  // The kernel that actually runs for a forward of `tokens` rows (differs from kernel() only for auto).
  virtual LinearKernel kernel_for(int64_t tokens) const { return kernel(); }
  virtual int64_t stored_bytes() const = 0;  // bytes this form keeps for the weight (values + index data)
  virtual Tensor to_dense() const = 0;       // [out, in] in the packed dtype: W⊙M again

  int64_t out_features() const { return out_; }
  int64_t in_features() const { return in_; }
  Device device() const { return device_; }

 protected:
  int64_t out_ = 0, in_ = 0;
  Device device_ = Device::cpu;
};

// Packs `weight` [out, in] with its u8 keep-mask (undefined = every weight kept) for `kernel` (not auto; see
// sparse/auto_kernel.h). `what` names the weight in errors (e.g. "model.decoder.layers.3.fc1.weight").
// dense/masked keep references to `weight` / `keep`, so they see later in-place updates; the sparse formats
// are copies. Throws when the kernel cannot run the weight (e.g. a mask that is not 2:4 asked to run as 2of4).
std::shared_ptr<PackedLinearWeight> pack_linear_weight(LinearKernel kernel, const Tensor& weight, const Tensor& keep,
                                                       DType dtype, const std::string& what);

// Shared by the formats: x [..., in] as a contiguous [tokens, in] matrix in `dtype`, and the leading shape.
struct LinearInput {
  Tensor x2;          // [tokens, in], contiguous, dtype
  Shape out_shape;    // [..., out]
  int64_t tokens = 0;
};
LinearInput prepare_linear_input(const Tensor& x, int64_t in, int64_t out, DType dtype, Device device, const char* op);
// bias [out] as a contiguous tensor in `dtype` on `device` (undefined stays undefined).
Tensor prepare_linear_bias(const Tensor& bias, int64_t out, DType dtype, Device device, const char* op);
// y2 [tokens, out] reshaped to li.out_shape and converted to `dtype`.
Tensor finish_linear_output(const Tensor& y2, const LinearInput& li, DType dtype);

// The forward every sparse format shares: x [..., in] and the bias go to the format's value `dtype`, the
// product is computed into a [tokens, out] matrix by `cuda(y2, x2, bias)` on the GPU, or on the CPU by
// `cpu(x, y, bias, tokens)` called with float or double pointers (bias may be null), and comes back as
// [..., out] in x's dtype.
template <class Cpu, class Cuda>
Tensor packed_linear_forward(const PackedLinearWeight& w, DType dtype, const Tensor& x, const Tensor& bias,
                             const char* op, Cpu&& cpu, Cuda&& cuda) {
  const int64_t in = w.in_features(), out = w.out_features();
  const LinearInput li = prepare_linear_input(x, in, out, dtype, w.device(), op);
  const Tensor b = prepare_linear_bias(bias, out, dtype, w.device(), op);
  Tensor y = Tensor::empty({li.tokens, out}, dtype, w.device());
  if (li.tokens > 0) {
    if (w.device() == Device::cuda) {
      cuda(y, li.x2, b);
    } else if (dtype == DType::f64) {
      cpu(li.x2.data<double>(), y.data<double>(), b.defined() ? b.data<double>() : nullptr, li.tokens);
    } else {
      PT_CHECK(dtype == DType::f32, op, ": dtype ", dtype_name(dtype), " not supported on cpu (allowed: f32, f64)");
      cpu(li.x2.data<float>(), y.data<float>(), b.defined() ? b.data<float>() : nullptr, li.tokens);
    }
  }
  return finish_linear_output(y, li, x.dtype());
}

// The host copies a format is built from: the weight as f64 and the keep-mask as u8 (all ones when undefined),
// both contiguous [out, in] on the CPU.
struct HostWeight {
  std::vector<double> w;
  std::vector<uint8_t> keep;
  int64_t out = 0, in = 0;
};
HostWeight host_weight(const Tensor& weight, const Tensor& keep, const char* op);

}  // namespace pt::sparse
