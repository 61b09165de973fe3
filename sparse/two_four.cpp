#include "sparse/two_four.h"

#include <algorithm>
#include <type_traits>

#include "sparse/cpu_avx512.h"
#include "sparse/cpu_isa.h"
#include "sparse/cpu_sparse_rows.h"
#include "sparse/sparse_cuda.h"
#include "tensor/ops.h"

namespace pt::sparse {

namespace {

constexpr int64_t kGroupsPerWord = 8;  // 4 bits of metadata per group of 4 inputs

inline int meta_nibble(const uint32_t* meta, int64_t words_per_row, int64_t o, int64_t g) {
  return int((meta[o * words_per_row + g / kGroupsPerWord] >> (4 * (g % kGroupsPerWord))) & 0xF);
}

// Row o's two stored values per group of 4 inputs (padding zeros included), a metadata word (8 groups) at a time.
template <class T, class Add>
void walk_two_four_row(const uint32_t* meta, const T* values, int64_t in, int64_t o, Add&& add) {
  const int64_t groups = in / 4, wpr = (in + 31) / 32;
  const T* v = values + o * (in / 2);
  for (int64_t w = 0; w < wpr; ++w) {
    uint32_t m = meta[o * wpr + w];
    const int64_t g0 = w * kGroupsPerWord, g1 = std::min(groups, g0 + kGroupsPerWord);
    for (int64_t g = g0; g < g1; ++g, m >>= 4, v += 2) {
      add(4 * g + (m & 3), v[0]);
      add(4 * g + ((m >> 2) & 3), v[1]);
    }
  }
}

}  // namespace

TwoFourWeight::TwoFourWeight(const Tensor& weight, const Tensor& keep, DType dtype, const std::string& what) {
  PT_CHECK(weight.defined() && weight.dim() == 2, "2:4 layout of ", what, ": the weight must be 2-D");
  PT_CHECK(weight.size(1) % 4 == 0, "2:4 layout of ", what, ": ", weight.size(1),
           " input features are not a multiple of 4; run it with linear_kernel = csr, bitmap or dense");
  // Without a mask the weight's own zeros decide which entries are pruned.
  PT_CHECK(weight.device() != Device::cuda || weight.size(1) % 32 == 0, "2:4 layout of ", what, " on cuda: ",
           weight.size(1), " input features are not a multiple of 32 (the mma.sp tile); run it with linear_kernel = "
           "csr, bitmap or dense");
  const Tensor k = keep.defined() ? keep : compare_scalar(weight, 0.0, CompareOp::ne);
  const HostWeight h = host_weight(weight, k, "TwoFourWeight");
  out_ = h.out;
  in_ = h.in;
  device_ = weight.device();
  const int64_t groups = in_ / 4, wpr = (in_ + 31) / 32;
  std::vector<double> vals(size_t(out_ * groups * 2), 0.0);
  std::vector<int32_t> words(size_t(out_ * wpr), 0);
  for (int64_t o = 0; o < out_; ++o) {
    for (int64_t g = 0; g < groups; ++g) {
      int idx[4], n = 0;
      for (int j = 0; j < 4; ++j)
        if (h.keep[size_t(o * in_ + 4 * g + j)]) idx[n++] = j;
      PT_CHECK(n <= 2, "2:4 layout of ", what, ": the mask keeps ", n, " of the 4 weights in row ", o, ", columns ",
               4 * g, "..", 4 * g + 3, " (2:4 keeps at most 2 of every 4 consecutive inputs); prune with pattern = "
               "2:4, or run it with linear_kernel = csr, bitmap or dense");
      // Pad to two positions with unused columns (their values stay 0), keeping the pair in ascending order.
      for (int j = 0; j < 4 && n < 2; ++j)
        if ((n == 0 || idx[0] != j)) idx[n++] = j;
      if (idx[0] > idx[1]) std::swap(idx[0], idx[1]);
      for (int s = 0; s < 2; ++s) {
        const size_t at = size_t(o * in_ + 4 * g + idx[s]);
        vals[size_t(o * groups * 2 + 2 * g + s)] = h.keep[at] ? h.w[at] : 0.0;
      }
      const uint32_t nib = uint32_t(idx[0]) | (uint32_t(idx[1]) << 2);
      words[size_t(o * wpr + g / kGroupsPerWord)] |= int32_t(nib << (4 * (g % kGroupsPerWord)));
    }
  }
  values = Tensor::from_vector(vals, {out_, in_ / 2}).to(device_, dtype);
  meta = Tensor::from_vector(words, {out_, wpr}).to(device_);
}

int64_t TwoFourWeight::stored_bytes() const { return int64_t(values.nbytes() + meta.nbytes()); }

Tensor TwoFourWeight::to_dense() const {
  const Tensor val = values.to(Device::cpu, DType::f64), md = meta.to(Device::cpu);
  const auto* m = reinterpret_cast<const uint32_t*>(md.data<int32_t>());
  const int64_t groups = in_ / 4, wpr = meta.size(1);
  std::vector<double> dense(size_t(out_ * in_), 0.0);
  for (int64_t o = 0; o < out_; ++o)
    for (int64_t g = 0; g < groups; ++g) {
      const int nib = meta_nibble(m, wpr, o, g);
      // The two columns differ, so each is written once (= keeps a stored -0.0 as it is).
      dense[size_t(o * in_ + 4 * g + (nib & 3))] = val.data<double>()[o * groups * 2 + 2 * g];
      dense[size_t(o * in_ + 4 * g + (nib >> 2))] = val.data<double>()[o * groups * 2 + 2 * g + 1];
    }
  return Tensor::from_vector(dense, {out_, in_}).to(device_, values.dtype());
}

Tensor TwoFourWeight::forward(const Tensor& x, const Tensor& bias) const {
  return packed_linear_forward(
      *this, values.dtype(), x, bias, "two_four_linear",
      [&](const auto* x2, auto* y, const auto* b, int64_t tokens) {
        const auto* m = reinterpret_cast<const uint32_t*>(meta.data<int32_t>());
        const auto* vals = values.data<std::remove_cvref_t<decltype(*x2)>>();
        if constexpr (std::is_same_v<std::remove_cvref_t<decltype(*x2)>, float>) {
          if (tokens == 1 && cpu::active_isa() == cpu::Isa::avx512)
            return cpu::two_four_token_avx512(m, vals, x2, b, y, in_, out_, cpu::worth_threads(in_ * out_));
        }
        cpu::sparse_rows_forward(x2, y, b, tokens, in_, out_, [&](int64_t o, auto&& add) {
          walk_two_four_row(m, vals, in_, o, add);
        });
      },
      [&](const Tensor& y, const Tensor& x2, const Tensor& b) {
#if PT_CUDA
        cuda_kernels::two_four_linear(y, x2, *this, b);
#endif
      });
}

}  // namespace pt::sparse
