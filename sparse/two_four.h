// 2:4 compressed form of a weight W [out, in] whose mask keeps at most 2 of every 4 consecutive inputs
// (in % 4 == 0), the layout sparse tensor cores read:
//   values: [out, in / 2]: group g of row o (columns 4g .. 4g+3) keeps its two values at values[o, 2g], [o, 2g+1],
//           in column order; a group with fewer than 2 kept weights is padded with zeros at unused positions;
//   meta:   i32 [out, ceil(in / 32)]: 4 bits per group, group g in word g / 8 at bits 4·(g % 8) ..: the low 2
//           bits are the column (0..3) of the first value, the high 2 bits that of the second (always larger).
// Half the values plus 4 bits per 4 weights: 0.5625× the dense bytes in f16.
//
// forward: y[t, o] = b[o] + Σ_g values[o, 2g]·x[t, 4g + i0] + values[o, 2g+1]·x[t, 4g + i1].
// CUDA (sparse/two_four.cu): mma.sp.sync m16n8k32 (f16 or bf16 in, f32 accumulate) with W as the sparse
// operand A (16 output rows × 32 inputs) and Xᵀ as B (32 inputs × 8 tokens); needs in % 32 == 0.
#pragma once
#include <string>

#include "sparse/packed_linear.h"

namespace pt::sparse {

class TwoFourWeight final : public PackedLinearWeight {
 public:
  // keep: u8 [out, in] (undefined: W's own zeros decide). Throws, naming `what`, the row and the columns,
  // when a group of 4 keeps more than 2 weights, or when in % 4 != 0.
  TwoFourWeight(const Tensor& weight, const Tensor& keep, DType dtype, const std::string& what = "weight");

  Tensor forward(const Tensor& x, const Tensor& bias) const override;
  LinearKernel kernel() const override { return LinearKernel::two_four; }
  int64_t stored_bytes() const override;
  Tensor to_dense() const override;

  Tensor values;  // [out, in / 2], dtype
  Tensor meta;    // i32 [out, ceil(in / 32)]
};

}  // namespace pt::sparse
