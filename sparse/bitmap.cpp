#include "sparse/bitmap.h"

#include <bit>
#include <limits>
#include <type_traits>

#include "sparse/cpu_avx512.h"
#include "sparse/cpu_isa.h"
#include "sparse/cpu_sparse_rows.h"
#include "sparse/sparse_cuda.h"
#include "tensor/ops.h"

namespace pt::sparse {

namespace {

// Row o's kept weights: the set bits of its words in order, the values consecutive from the row's first offset.
// Two words at a time, so the loop over set bits ends (and mispredicts) half as often.
template <class T, class Add>
void walk_bitmap_row(const uint32_t* words, const int32_t* offsets, const T* values, int64_t words_per_row,
                     int64_t o, Add&& add) {
  const uint32_t* row = words + o * words_per_row;
  const T* v = values + offsets[o * words_per_row];
  for (int64_t w = 0; w < words_per_row; w += 2) {
    uint64_t bits = row[w];
    if (w + 1 < words_per_row) bits |= uint64_t(row[w + 1]) << 32;
    for (; bits; bits &= bits - 1) add(w * kBitmapWordBits + std::countr_zero(bits), *v++);
  }
}

}  // namespace

BitmapWeight::BitmapWeight(const Tensor& weight, const Tensor& keep, DType dtype) {
  const HostWeight h = host_weight(weight, keep, "BitmapWeight");
  out_ = h.out;
  in_ = h.in;
  device_ = weight.device();
  const int64_t wpr = (in_ + kBitmapWordBits - 1) / kBitmapWordBits;
  std::vector<int32_t> word_bits(size_t(out_ * wpr), 0), word_offsets(size_t(out_ * wpr), 0);
  std::vector<double> vals;
  for (int64_t o = 0; o < out_; ++o) {
    for (int64_t w = 0; w < wpr; ++w) {
      PT_CHECK(vals.size() < size_t(std::numeric_limits<int32_t>::max()), "BitmapWeight: more than 2^31 - 1 kept weights");
      word_offsets[size_t(o * wpr + w)] = int32_t(vals.size());
      uint32_t bits = 0;
      for (int64_t b = 0; b < kBitmapWordBits && w * kBitmapWordBits + b < in_; ++b) {
        const size_t at = size_t(o * in_ + w * kBitmapWordBits + b);
        if (!h.keep[at]) continue;
        bits |= 1u << b;
        vals.push_back(h.w[at]);
      }
      word_bits[size_t(o * wpr + w)] = int32_t(bits);
    }
  }
  words = Tensor::from_vector(word_bits, {out_, wpr}).to(device_);
  offsets = Tensor::from_vector(word_offsets, {out_, wpr}).to(device_);
  values = Tensor::from_vector(vals, {int64_t(vals.size())}).to(device_, dtype);
}

int64_t BitmapWeight::stored_bytes() const { return int64_t(words.nbytes() + offsets.nbytes() + values.nbytes()); }

Tensor BitmapWeight::to_dense() const {
  const Tensor wd = words.to(Device::cpu), off = offsets.to(Device::cpu);
  const Tensor val = values.to(Device::cpu, DType::f64);
  const int64_t wpr = words_per_row();
  std::vector<double> dense(size_t(out_ * in_), 0.0);
  for (int64_t o = 0; o < out_; ++o)
    for (int64_t w = 0; w < wpr; ++w) {
      uint32_t bits = uint32_t(wd.data<int32_t>()[o * wpr + w]);
      int32_t k = off.data<int32_t>()[o * wpr + w];
      while (bits) {
        const int b = std::countr_zero(bits);
        bits &= bits - 1;
        dense[size_t(o * in_ + w * kBitmapWordBits + b)] = val.data<double>()[k++];
      }
    }
  return Tensor::from_vector(dense, {out_, in_}).to(device_, values.dtype());
}

Tensor BitmapWeight::forward(const Tensor& x, const Tensor& bias) const {
  return packed_linear_forward(
      *this, values.dtype(), x, bias, "bitmap_linear",
      [&](const auto* x2, auto* y, const auto* b, int64_t tokens) {
        const auto* w = reinterpret_cast<const uint32_t*>(words.data<int32_t>());
        const int32_t* off = offsets.data<int32_t>();
        const auto* vals = values.data<std::remove_cvref_t<decltype(*x2)>>();
        const int64_t wpr = words_per_row();
        if constexpr (std::is_same_v<std::remove_cvref_t<decltype(*x2)>, float>) {
          if (tokens == 1 && cpu::active_isa() == cpu::Isa::avx512)
            return cpu::bitmap_token_avx512(w, off, vals, wpr, x2, b, y, in_, out_, cpu::worth_threads(in_ * out_));
        }
        cpu::sparse_rows_forward(x2, y, b, tokens, in_, out_, [&](int64_t o, auto&& add) {
          walk_bitmap_row(w, off, vals, wpr, o, add);
        });
      },
      [&](const Tensor& y, const Tensor& x2, const Tensor& b) {
#if PT_CUDA
        cuda_kernels::bitmap_linear(y, x2, *this, b);
#endif
      });
}

}  // namespace pt::sparse
