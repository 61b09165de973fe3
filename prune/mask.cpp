// Mask selection: argument checks, the CPU reference (partial selection per group) and the unfused composition
// of tensor ops (top-k per group, then a threshold-and-index rule). The CUDA kernels are in mask.cu.
//
// The order that makes the three agree exactly: scores are canonicalised (NaN -> +inf, -inf -> lowest finite,
// -0 -> +0), forced positions sort before every score, equal scores go by lower index.
#include "prune/mask.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <vector>

#include "tensor/nvtx.h"
#include "tensor/ops.h"

namespace pt::prune {
namespace {

// Groups are contiguous segments of the row-major matrix: `groups` of `size` elements each.
struct GroupLayout {
  int64_t groups = 0, size = 0;
  int64_t rows = 0, cols = 0, group_cols = 0;  // for naming a group in messages
  MaskGroup kind = MaskGroup::matrix;
};

GroupLayout layout_of(const Tensor& scores, MaskGroup group, int64_t group_cols) {
  GroupLayout l;
  l.rows = scores.size(0);
  l.cols = scores.size(1);
  l.group_cols = group_cols;
  l.kind = group;
  if (group_cols > 0) {
    l.size = group_cols;
    l.groups = l.rows * (l.cols / group_cols);
  } else if (group == MaskGroup::row) {
    l.size = l.cols;
    l.groups = l.rows;
  } else {
    l.size = l.rows * l.cols;
    l.groups = 1;
  }
  return l;
}

std::string group_name(const GroupLayout& l, int64_t g) {
  if (l.group_cols > 0) {
    const int64_t per_row = l.cols / l.group_cols;
    const int64_t c0 = (g % per_row) * l.group_cols;
    return pt::detail::concat("group at row ", g / per_row, ", columns ", c0, "..", c0 + l.group_cols - 1);
  }
  if (l.kind == MaskGroup::row) return pt::detail::concat("row ", g);
  return "the matrix";
}

[[noreturn]] void fail_overfull(const char* op, const GroupLayout& l, int64_t g, int64_t forced, int64_t k) {
  PT_FAIL(op, ": ", group_name(l, g), " already has ", forced, " positions pruned in prev_keep, more than the ", k,
          " it may prune (the target would shrink the pruned set; raise the sparsity or drop prev_keep)");
}

// Plain loops: per group, forced positions, then the (k - forced) lowest (score, index) pairs.
OverfullGroup select_reference(const MaskSelectArgs& a) {
  const float* s = a.scores.data<float>();
  const uint8_t* p = a.prev_keep.defined() ? a.prev_keep.data<uint8_t>() : nullptr;
  uint8_t* out = a.keep.data<uint8_t>();
  const int64_t size = a.group_size, groups = a.scores.numel() / size, k = a.k;
  std::vector<std::pair<float, int64_t>> candidates;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t base = g * size;
    candidates.clear();
    int64_t forced = 0;
    for (int64_t j = 0; j < size; ++j) {
      if (p && p[base + j] == 0) {
        ++forced;
        out[base + j] = 0;
      } else {
        out[base + j] = 1;
        candidates.emplace_back(canonical_score(s[base + j]), j);
      }
    }
    if (forced > k) return {g, forced};
    const int64_t take = k - forced;
    if (take == 0) continue;
    std::nth_element(candidates.begin(), candidates.begin() + (take - 1), candidates.end());  // pair order = ties by index
    for (int64_t t = 0; t < take; ++t) out[base + candidates[size_t(t)].second] = 0;
  }
  return {};
}

// A composition of tensor ops: per group the k-th smallest (score, index) pair from topk, then
// pruned = score < t  or  (score == t and index <= index of the k-th).
OverfullGroup select_unfused(const MaskSelectArgs& a) {
  const Device dev = a.scores.device();
  const int64_t size = a.group_size, groups = a.scores.numel() / size, k = a.k;
  Tensor x = a.scores.reshape({groups, size});
  x = masked_fill(x, compare(x, x, CompareOp::ne), std::numeric_limits<double>::infinity());  // NaN -> +inf
  x = maximum(x, Tensor::full({}, -FLT_MAX, DType::f32, dev));                                // -inf -> lowest
  x = add_scalar(x, 0.0);                                                                     // -0 -> +0
  if (a.prev_keep.defined()) {
    const OverfullGroup bad = first_overfull_group(a.prev_keep, size, k);
    if (bad.group >= 0) return bad;
    const Tensor forced = compare_scalar(a.prev_keep.reshape({groups, size}), 0.0, CompareOp::eq);
    x = masked_fill(x, forced, -std::numeric_limits<double>::infinity());  // below every canonical score
  }
  if (k == 0) {
    Tensor(a.keep).fill_(1.0);
    return {};
  }
  const TopKOut lowest = topk(x, k, 1, /*largest=*/false);
  const Tensor t = lowest.values.narrow(1, k - 1, 1);                        // [G, 1]
  const Tensor last = lowest.indices.narrow(1, k - 1, 1).to(DType::f64);    // [G, 1]
  const Tensor index = Tensor::arange(0, size, 1, DType::f64, dev);          // [S]
  const Tensor below = compare(x, t, CompareOp::lt).to(DType::f32);
  const Tensor tie = mul(compare(x, t, CompareOp::eq).to(DType::f32),
                         compare(index.reshape({1, size}), last, CompareOp::le).to(DType::f32));
  Tensor(a.keep).copy_(compare_scalar(add(below, tie), 0.5, CompareOp::lt).reshape(a.keep.shape()));
  return {};
}

}  // namespace

OverfullGroup first_overfull_group(const Tensor& prev_keep, int64_t group_size, int64_t k) {
  if (!prev_keep.defined() || prev_keep.numel() == 0) return {};
  const int64_t groups = prev_keep.numel() / group_size;
  const Tensor forced = compare_scalar(prev_keep.reshape({groups, group_size}), 0.0, CompareOp::eq);
  const Tensor counts = sum(forced.to(DType::f64), 1);
  if (max(counts, 0).item() <= double(k) + 0.5) return {};
  const std::vector<double> c = counts.to_vector<double>();
  for (int64_t g = 0; g < groups; ++g)
    if (c[size_t(g)] > double(k) + 0.5) return {g, int64_t(c[size_t(g)])};
  return {};
}

void check_prev_keep_fits(const char* op, const Tensor& prev_keep, int64_t k, MaskGroup group, int64_t group_cols) {
  if (!prev_keep.defined() || prev_keep.numel() == 0) return;
  const GroupLayout l = layout_of(prev_keep, group, group_cols);
  const OverfullGroup bad = first_overfull_group(prev_keep.contiguous(), l.size, k);
  if (bad.group >= 0) fail_overfull(op, l, bad.group, bad.forced, k);
}

float canonical_score(float s) {
  if (std::isnan(s)) return std::numeric_limits<float>::infinity();
  if (s == -std::numeric_limits<float>::infinity()) return -FLT_MAX;
  return s == 0.0f ? 0.0f : s;  // -0 -> +0
}

const char* mask_group_name(MaskGroup g) { return g == MaskGroup::matrix ? "matrix" : "row"; }

MaskGroup parse_mask_group(const std::string& name) {
  if (name == "matrix") return MaskGroup::matrix;
  if (name == "row") return MaskGroup::row;
  PT_FAIL("mask group '", name, "' is unknown (allowed: matrix, row)");
}

Tensor select_lowest_k(const Tensor& scores, int64_t k, MaskGroup group, const Tensor& prev_keep,
                       const std::string& variant, int64_t group_cols) {
  check_weight_matrix("select_mask", scores, "scores");
  check_keep_mask("select_mask", prev_keep, scores, "prev_keep");
  PT_CHECK(group_cols >= 0, "select_mask: group_cols = ", group_cols, " is negative");
  PT_CHECK(group_cols == 0 || scores.size(1) % group_cols == 0, "select_mask: ", scores.size(1),
           " columns do not split into groups of ", group_cols, " (N:M needs cols % M == 0)");
  const GroupLayout l = layout_of(scores, group, group_cols);
  PT_CHECK(k >= 0 && k <= l.size, "select_mask: k = ", k, " is outside [0, ", l.size, "] (the group size)");
  const auto& select = mask_family().get(variant, scores.device());
  PT_NVTX_RANGE("prune/mask");
  if (scores.numel() == 0) return Tensor::ones(scores.shape(), DType::u8, scores.device());
  Tensor keep = Tensor::empty(scores.shape(), DType::u8, scores.device());
  const OverfullGroup bad =
      select({scores.contiguous(), prev_keep.defined() ? prev_keep.contiguous() : Tensor(), keep, l.size, k});
  if (bad.group >= 0) fail_overfull("select_mask", l, bad.group, bad.forced, k);
  return keep;
}

Tensor select_mask(const Tensor& scores, const SparsityPattern& pattern, MaskGroup group, const Tensor& prev_keep,
                   const std::string& variant) {
  pattern.validate();
  check_weight_matrix("select_mask", scores, "scores");
  if (pattern.is_nm()) {
    PT_CHECK(scores.size(1) % pattern.m == 0, "select_mask: ", pattern.describe(), " needs the column count to be a ",
             "multiple of ", pattern.m, ", got ", scores.describe());
    return select_lowest_k(scores, pattern.n, group, prev_keep, variant, pattern.m);
  }
  const int64_t group_size = group == MaskGroup::row ? scores.size(1) : scores.numel();
  return select_lowest_k(scores, pruned_count(group_size, pattern.sparsity), group, prev_keep, variant);
}

namespace detail {

using MaskVariant = kernels::Family<MaskSelect>::Variant;

MaskVariant mask_reference_variant() {
  return {{.name = "reference",
           .devices = {Device::cpu},
           .dtypes = {DType::f32},
           .summary = "per group: forced positions, then std::nth_element over (score, index) pairs"},
          select_reference};
}

MaskVariant mask_unfused_variant() {
  return {{.name = "unfused",
           .devices = {Device::cpu, Device::cuda},
           .dtypes = {DType::f32},
           .summary = "tensor ops: top-k per group, then a threshold-and-index rule"},
          select_unfused};
}

}  // namespace detail

}  // namespace pt::prune
