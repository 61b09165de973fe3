#include "sparse/csr.h"

#include <limits>
#include <type_traits>

#include "sparse/cpu_sparse_rows.h"
#include "sparse/sparse_cuda.h"
#include "tensor/ops.h"

namespace pt::sparse {

CsrWeight::CsrWeight(const Tensor& weight, const Tensor& keep, DType dtype) {
  const HostWeight h = host_weight(weight, keep, "CsrWeight");
  out_ = h.out;
  in_ = h.in;
  device_ = weight.device();
  std::vector<int32_t> offsets(size_t(out_ + 1), 0), cols;
  std::vector<double> vals;
  for (int64_t o = 0; o < out_; ++o) {
    for (int64_t i = 0; i < in_; ++i) {
      const size_t at = size_t(o * in_ + i);
      if (!h.keep[at]) continue;
      PT_CHECK(cols.size() < size_t(std::numeric_limits<int32_t>::max()), "CsrWeight: more than 2^31 - 1 kept weights");
      cols.push_back(int32_t(i));
      vals.push_back(h.w[at]);
    }
    offsets[size_t(o + 1)] = int32_t(cols.size());
  }
  row_offsets = Tensor::from_vector(offsets, {out_ + 1}).to(device_);
  col_indices = Tensor::from_vector(cols, {int64_t(cols.size())}).to(device_);
  values = Tensor::from_vector(vals, {int64_t(vals.size())}).to(device_, dtype);
}

int64_t CsrWeight::stored_bytes() const {
  return int64_t(row_offsets.nbytes() + col_indices.nbytes() + values.nbytes());
}

Tensor CsrWeight::to_dense() const {
  const Tensor off = row_offsets.to(Device::cpu), col = col_indices.to(Device::cpu);
  const Tensor val = values.to(Device::cpu, DType::f64);
  std::vector<double> dense(size_t(out_ * in_), 0.0);
  for (int64_t o = 0; o < out_; ++o)
    for (int32_t k = off.data<int32_t>()[o]; k < off.data<int32_t>()[o + 1]; ++k)
      dense[size_t(o * in_ + col.data<int32_t>()[k])] = val.data<double>()[k];
  return Tensor::from_vector(dense, {out_, in_}).to(device_, values.dtype());
}

Tensor CsrWeight::forward(const Tensor& x, const Tensor& bias) const {
  return packed_linear_forward(
      *this, values.dtype(), x, bias, "csr_linear",
      [&](const auto* x2, auto* y, const auto* b, int64_t tokens) {
        const int32_t* offsets = row_offsets.data<int32_t>();
        const int32_t* cols = col_indices.data<int32_t>();
        const auto* vals = values.data<std::remove_cvref_t<decltype(*x2)>>();
        cpu::sparse_rows_forward(x2, y, b, tokens, in_, out_, [&](int64_t o, auto&& add) {
          for (int32_t k = offsets[o]; k < offsets[o + 1]; ++k) add(cols[k], vals[k]);
        });
      },
      [&](const Tensor& y, const Tensor& x2, const Tensor& b) {
#if PT_CUDA
        cuda_kernels::csr_linear(y, x2, *this, b);
#endif
      });
}

}  // namespace pt::sparse
