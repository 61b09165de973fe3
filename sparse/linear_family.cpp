// The sparse_linear family: the packed formats of sparse/packed_linear.h registered over pack_linear_weight, one
// line each, with the cost of their format.
#include "sparse/linear_family.h"

#include <cstdio>

namespace pt::sparse {

namespace {

using Variant = kernels::Family<PackLinear>::Variant;

struct Sizes {
  double tokens, out, in, kept, act_bytes;  // kept: weights kept; act_bytes: bytes of one activation value
};
Sizes sizes_of(const kernels::Problem& p) {
  const double out = double(p.dim("out")), in = double(p.dim("in"));
  return {double(p.dim("tokens")), out, in, (1.0 - pattern_sparsity(p.pattern)) * out * in,
          double(dtype_size(p.dtype))};
}
// x read, y written; the weight's share is the format's.
double activation_bytes(const Sizes& s) { return s.act_bytes * s.tokens * (s.in + s.out); }

// The format `kernel` packed with the dtype it takes on the weight's device.
Variant format_variant(LinearKernel kernel, std::string summary, kernels::CostModel cost) {
  kernels::VariantInfo info{.name = linear_kernel_name(kernel),
                            .devices = {Device::cpu, Device::cuda},
                            .dtypes = {DType::f32, DType::bf16},
                            .summary = std::move(summary),
                            .cost = std::move(cost)};
  if (kernel == LinearKernel::two_four) {
    info.supports = "2:4 masks only";
    info.accepts = [](const kernels::Problem& p) { return p.pattern == "2:4" && p.dim("in") % 4 == 0; };
  }
  return {std::move(info), [kernel](const Tensor& w, const Tensor& keep, const std::string& what) {
            return pack_linear_weight(kernel, w, keep, default_packed_dtype(kernel, w.dtype(), w.device()), what);
          }};
}

}  // namespace

double pattern_sparsity(const std::string& pattern) {
  int n = 0, m = 0;
  double s = 0;
  if (std::sscanf(pattern.c_str(), "%d:%d", &n, &m) == 2 && m > 0) return double(n) / double(m);
  if (std::sscanf(pattern.c_str(), "unstructured %lf", &s) == 1) return s;
  PT_FAIL("sparse_linear: pattern '", pattern, "' is not 'unstructured S' or 'N:M'");
}

kernels::Family<PackLinear>& sparse_linear_family() {
  static kernels::Family<PackLinear> family({
      .name = "sparse_linear",
      .summary = "y = x·(W⊙M)ᵀ + b through a packed form of a pruned weight W [out, in]",
      .reference = "masked",
      .fused_order = {"dense"},
      .unfused_order = {"masked"},
      .cost = [](const kernels::Problem& p) {  // the masked product: W and M read, every product done
        const Sizes s = sizes_of(p);
        return kernels::Cost{.bytes = activation_bytes(s) + s.out * s.in * (s.act_bytes + 1),
                             .flops = 2 * s.tokens * s.out * s.in};
      }});
  static const bool registered = [] {
    family.add(format_variant(LinearKernel::masked, "W⊙M formed on each call, then the dense product", nullptr));
    family.add(format_variant(LinearKernel::dense,
                              "the weight as stored, BLAS (own AVX-512 kernel at 2..16 tokens) / cuBLAS",
                              [](const kernels::Problem& p) {
                                const Sizes s = sizes_of(p);
                                return kernels::Cost{.bytes = activation_bytes(s) + s.out * s.in * s.act_bytes,
                                                     .flops = 2 * s.tokens * s.out * s.in};
                              }));
    family.add(format_variant(LinearKernel::csr, "CSR: CPU row loops, cuSPARSE SpMM", [](const kernels::Problem& p) {
      const Sizes s = sizes_of(p);  // a value and a 4-byte column index per kept weight, row offsets
      return kernels::Cost{.bytes = activation_bytes(s) + s.kept * (s.act_bytes + 4) + 4 * (s.out + 1),
                           .flops = 2 * s.tokens * s.kept};
    }));
    family.add(format_variant(LinearKernel::bitmap,
                              "bitmap: CPU set-bit loops (AVX-512 expand at 1 token), own CUDA kernels",
                              [](const kernels::Problem& p) {
                                const Sizes s = sizes_of(p);  // the kept values and one bit per weight
                                return kernels::Cost{.bytes = activation_bytes(s) + s.kept * s.act_bytes + s.out * s.in / 8,
                                                     .flops = 2 * s.tokens * s.kept};
                              }));
    family.add(format_variant(LinearKernel::two_four,
                              "2:4 compressed: CPU group loops (AVX-512 permute at 1 token), own mma.sp kernel",
                              [](const kernels::Problem& p) {
                                const Sizes s = sizes_of(p);  // half the values and a 2-bit index per kept value
                                return kernels::Cost{.bytes = activation_bytes(s) + s.out * s.in / 2 * s.act_bytes +
                                                              s.out * s.in / 8,
                                                     .flops = 2 * s.tokens * s.out * s.in / 2,
                                                     .tensor_cores = true};
                              }));
    return true;
  }();
  (void)registered;
  return family;
}

}  // namespace pt::sparse
