// The kernel family sparse_linear (tensor/kernel_registry.h): y = x·(W⊙M)ᵀ + b for a pruned weight W [out, in]
// with its u8 keep-mask M, through a packed form of the weight (sparse/packed_linear.h). A variant *packs*: it
// turns (W, M) into a PackedLinearWeight whose forward() is the kernel. The formats of packed_linear.h are
// registered over pack_linear_weight (sparse/linear_family.cpp), each with its cost model (the bytes its format
// stores and the products it does), with values in default_packed_dtype():
//   masked   W⊙M formed on each call, then the dense product: the reference every format must equal
//   dense    the weight as stored (zeros in place), BLAS / cuBLAS
//   csr      row offsets, column indices, values: CPU loops, cuSPARSE SpMM
//   bitmap   a 32-bit mask word per 32 inputs + the kept values: CPU loops, own CUDA kernels (bf16 on CUDA)
//   2of4     2:4 compressed (2-bit indices): CPU loops, own mma.sp kernel (bf16 on CUDA); 2:4 masks only
// `[run] linear_kernel` (and opt_eval --linear-kernel) chooses among them, or `auto`, per layer.
#pragma once
#include <memory>
#include <string>

#include "sparse/packed_linear.h"
#include "tensor/kernel_registry.h"

namespace pt::sparse {

using PackLinear = std::shared_ptr<PackedLinearWeight>(const Tensor& weight, const Tensor& keep, const std::string& what);
kernels::Family<PackLinear>& sparse_linear_family();

// The pruned fraction a problem's pattern names: "unstructured 0.9" -> 0.9, "2:4" -> 0.5.
double pattern_sparsity(const std::string& pattern);

}  // namespace pt::sparse
