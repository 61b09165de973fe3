// CSR (compressed sparse row) form of a pruned weight W [out, in]: row o's kept weights are
// values[row_offsets[o] .. row_offsets[o+1]) at input columns col_indices[...], ascending. Indices are i32
// (cuSPARSE's 32-bit index type), so a weight may hold at most 2^31 - 1 kept entries.
//
// forward: y[t, o] = b[o] + Σ_k values[k] · x[t, col_indices[k]]. CPU (sparse/cpu_sparse_rows.h): each row
// walks its kept weights once per block of up to 16 tokens (rows in parallel). CUDA: cuSPARSE SpMM, Yᵀ = W·Xᵀ with X and Y read/written in place as
// column-major matrices (X row-major [tokens, in] is Xᵀ column-major), bias pre-filled into Y (beta = 1);
// descriptors, workspace and SpMM preprocessing are made once per weight and token count.
#pragma once
#include <memory>

#include "sparse/packed_linear.h"

namespace pt::sparse {

namespace cuda_kernels {
struct CsrSpmmPlans;  // sparse/csr.cu
}

class CsrWeight final : public PackedLinearWeight {
 public:
  // keep: u8 [out, in] (undefined = every weight kept); values are stored in `dtype` on weight's device.
  CsrWeight(const Tensor& weight, const Tensor& keep, DType dtype);

  Tensor forward(const Tensor& x, const Tensor& bias) const override;
  LinearKernel kernel() const override { return LinearKernel::csr; }
  int64_t stored_bytes() const override;
  Tensor to_dense() const override;
  int64_t nnz() const { return values.numel(); }

  Tensor row_offsets;  // i32 [out + 1]
  Tensor col_indices;  // i32 [nnz]
  Tensor values;       // [nnz], dtype

  // The CUDA forward's cuSPARSE state: the weight's descriptor once, and per token count the dense descriptors
  // and a workspace that cusparseSpMM_preprocess has prepared (sparse/csr.cu). Built on first use, kept with the
  // weight; empty on the CPU. Forwards of one weight must be stream-ordered (one stream, as everywhere here).
  mutable std::shared_ptr<cuda_kernels::CsrSpmmPlans> spmm_plans;
};

}  // namespace pt::sparse
