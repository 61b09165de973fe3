// CUDA entry points of the sparse formats (sparse/*.cu), called by the formats' forward() after validation,
// only in builds with PT_CUDA. Inputs are contiguous and on the GPU: x2 [tokens, in] in the format's value
// dtype, bias [out] in that dtype or undefined, out [tokens, out] in that dtype. Each runs on
// pt::cuda::current_stream() and checks its launch.
#pragma once
#include "sparse/bitmap.h"
#include "sparse/csr.h"
#include "sparse/two_four.h"

namespace pt::sparse::cuda_kernels {

void csr_linear(const Tensor& out, const Tensor& x2, const CsrWeight& w, const Tensor& bias);        // cuSPARSE
int64_t csr_spmm_plans_built(const CsrWeight& w);  // cuSPARSE plans made for w so far (one per token count)
void bitmap_linear(const Tensor& out, const Tensor& x2, const BitmapWeight& w, const Tensor& bias);  // own kernels
void two_four_linear(const Tensor& out, const Tensor& x2, const TwoFourWeight& w, const Tensor& bias);  // mma.sp

// Token counts up to this use the bitmap decode kernel (a warp per row); more use the tensor-core tile kernel.
inline constexpr int64_t kBitmapDecodeMaxTokens = 8;

}  // namespace pt::sparse::cuda_kernels
