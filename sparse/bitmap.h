// Bitmap form of a pruned weight W [out, in], the unstructured format of this code base's own kernels
// (the idea of Flash-LLM: load the weight compressed, expand it on chip, multiply dense):
//   words:   i32 [out, W] with W = ceil(in / 32): bit b of words[o, w] is the keep bit of column 32w + b;
//   offsets: i32 [out, W]: where the values of word (o, w) start in `values`;
//   values:  [nnz], the kept weights row by row, word by word, bit by bit (the same order as CSR's values).
// Per weight that is 1 bit + 1 bit of offset (32 bits per 32 columns) + the kept values: at 50 % sparsity in
// f16, 1.06 bytes against 2 dense, and the indices never cost more than 2 bits per weight (CSR: 32 per kept one).
//
// forward: y[t, o] = b[o] + Σ over set bits (w, b) of values[...] · x[t, 32w + b].
// CUDA (sparse/bitmap.cu): for few tokens (decode) a warp per output row, each lane walking its words' set
// bits; for many tokens (prefill) a block expands a 64-row × 64-column tile of W into shared memory as dense
// f16/bf16 and multiplies it with the matching X tile on tensor cores (WMMA), accumulating in f32.
#pragma once
#include "sparse/packed_linear.h"

namespace pt::sparse {

inline constexpr int64_t kBitmapWordBits = 32;

class BitmapWeight final : public PackedLinearWeight {
 public:
  // keep: u8 [out, in] (undefined = every weight kept); values are stored in `dtype` on weight's device.
  BitmapWeight(const Tensor& weight, const Tensor& keep, DType dtype);

  Tensor forward(const Tensor& x, const Tensor& bias) const override;
  LinearKernel kernel() const override { return LinearKernel::bitmap; }
  int64_t stored_bytes() const override;
  Tensor to_dense() const override;
  int64_t words_per_row() const { return words.size(1); }
  int64_t nnz() const { return values.numel(); }

  Tensor words;    // i32 [out, words_per_row]
  Tensor offsets;  // i32 [out, words_per_row]
  Tensor values;   // [nnz], dtype
};

}  // namespace pt::sparse
