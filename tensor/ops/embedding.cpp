// Embedding gather and its backward scatter-add: validation + dispatch and the CPU reference
// (ops/embedding.cu is the CUDA side). Ids are i32 or i64 of any shape; an id outside [0, rows) is an
// error on both devices (never a silent out-of-bounds read).
//
// The backward adds the gradient rows of each id in ascending position order, accumulating in double
// (f32 for half types on CUDA), so it is deterministic; row padding_idx (if >= 0) stays zero like
// PyTorch's padding_idx.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "tensor/ops.h"
#include "tensor/ops/checks.h"
#include "tensor/ops/dispatch.h"
#if PT_CUDA
#include "tensor/ops/cuda_ops.h"
#endif

namespace pt {
namespace {

void check_ids(const char* op, const Tensor& ids) {
  checks::defined(op, ids, "ids");
  checks::dtype_in(op, ids, {DType::i32, DType::i64});
}

// ids (contiguous, on the CPU) as i64, each checked against [0, rows).
std::vector<int64_t> cpu_ids_checked(const char* op, const Tensor& ids, int64_t rows, const std::string& table) {
  std::vector<int64_t> v = ids.to_vector<int64_t>();
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] < 0 || v[i] >= rows) PT_FAIL(checks::bad_id_message(op, v[i], int64_t(i), ids, rows, table));
  return v;
}

template <class T>
void cpu_embedding_backward(const T* g, const std::vector<int64_t>& ids, T* out, int64_t c, int64_t padding_idx) {
  // Positions grouped by id, ascending within an id (stable), so each row is summed once, in order.
  std::vector<int64_t> order(ids.size());
  std::iota(order.begin(), order.end(), int64_t(0));
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return ids[size_t(a)] < ids[size_t(b)]; });
  std::vector<double> acc(static_cast<size_t>(c));
  for (size_t k = 0; k < order.size();) {
    const int64_t id = ids[size_t(order[k])];
    size_t end = k;
    while (end < order.size() && ids[size_t(order[end])] == id) ++end;
    if (id != padding_idx) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (size_t q = k; q < end; ++q) {
        const T* row = g + order[q] * c;
        for (int64_t j = 0; j < c; ++j) acc[size_t(j)] += double(row[j]);
      }
      for (int64_t j = 0; j < c; ++j) out[id * c + j] = T(acc[size_t(j)]);
    }
    k = end;
  }
}

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  checks::defined("embedding", weight, "weight");
  check_ids("embedding", ids);
  checks::same_device("embedding", {&weight, &ids});
  checks::float_dtype("embedding", weight);
  checks::rank("embedding", weight, 2, "weight");
  Tensor wc = weight.contiguous(), ic = ids.contiguous();
  PT_DISPATCH_CUDA(weight, return cuda_ops::embedding(wc, ic))
  const int64_t rows = weight.size(0), c = weight.size(1);
  Shape out_shape = ids.shape();
  out_shape.push_back(c);
  Tensor out = Tensor::empty(out_shape, weight.dtype());
  const std::vector<int64_t> v = cpu_ids_checked("embedding", ic, rows, "weight " + weight.describe());
  const size_t row_bytes = size_t(c) * dtype_size(weight.dtype());
  const char* src = static_cast<const char*>(wc.data_ptr());
  char* dst = static_cast<char*>(out.data_ptr());
  for (size_t i = 0; i < v.size(); ++i) std::memcpy(dst + i * row_bytes, src + size_t(v[i]) * row_bytes, row_bytes);
  return out;
}

Tensor embedding_backward(const Tensor& grad_out, const Tensor& ids, int64_t num_rows, int64_t padding_idx) {
  const char* op = "embedding_backward";
  checks::defined(op, grad_out, "grad_out");
  check_ids(op, ids);
  checks::same_device(op, {&grad_out, &ids});
  checks::float_dtype(op, grad_out);
  bool shape_ok = grad_out.dim() == ids.dim() + 1;
  for (int64_t d = 0; shape_ok && d < ids.dim(); ++d) shape_ok = grad_out.size(d) == ids.size(d);
  PT_CHECK(shape_ok, op, ": grad_out ", grad_out.describe(), " does not match ids ", ids.describe(),
           " (expected ids' shape plus a last dim C)");
  PT_CHECK(num_rows >= 0, op, ": num_rows must be >= 0, got ", num_rows);
  PT_CHECK(padding_idx < num_rows, op, ": padding_idx ", padding_idx, " is out of range for ", num_rows, " rows");
  Tensor gc = grad_out.contiguous(), ic = ids.contiguous();
  PT_DISPATCH_CUDA(grad_out, return cuda_ops::embedding_backward(gc, ic, num_rows, padding_idx))
  const int64_t c = grad_out.size(-1);
  Tensor out = Tensor::zeros({num_rows, c}, grad_out.dtype());
  const std::vector<int64_t> v = cpu_ids_checked(op, ic, num_rows, "num_rows " + std::to_string(num_rows));
  dispatch_cpu_float(grad_out.dtype(), op, [&]<class T>() {
    cpu_embedding_backward<T>(gc.data<T>(), v, out.data<T>(), c, padding_idx);
  });
  return out;
}

}  // namespace pt
