// Mask selection: prune the lowest scores with exact counts, keeping every previously pruned position pruned.
//
// Order: positions pruned in prev_keep come first (forced), then scores ascending, then lower index first
// (row-major index inside the group). NaN scores rank above every number. The order is a total order, so the
// reference loops, the op composition and the CUDA kernels pick the identical mask.
// Forced positions count toward the target; a group holding more forced positions than its target is an
// error naming the group and both counts.
#pragma once
#include <cstdint>
#include <string>

#include "prune/pattern.h"
#include "tensor/kernel_registry.h"
#include "tensor/tensor.h"

namespace pt::prune {

// The kernel family mask (prune/kernel_families.cpp registers its variants):
//   reference  per group, the forced positions, then a partial selection (std::nth_element) of the rest (CPU)
//   unfused    a composition of tensor ops: top-k per group, then a threshold-and-index rule (any device)
//   fused      CUDA: a radix select per group; groups of at most 32 (N:M) one element per lane of a warp
// A variant receives groups of `group_size` consecutive elements of the row-major matrix (rows, matrix, or m
// columns of a row), writes every element of `keep`, and returns the first group whose forced positions exceed k
// (then `keep` is unspecified and select_lowest_k raises the error naming the group).
struct MaskSelectArgs {
  Tensor scores;     // f32 [rows, cols], contiguous
  Tensor prev_keep;  // u8 [rows, cols], contiguous, or undefined
  Tensor keep;       // u8 [rows, cols], contiguous: written
  int64_t group_size = 0, k = 0;
};
struct OverfullGroup {
  int64_t group = -1;  // -1: none
  int64_t forced = 0;
};
using MaskSelect = OverfullGroup(const MaskSelectArgs&);
kernels::Family<MaskSelect>& mask_family();

enum class MaskGroup { matrix, row };  // one selection per matrix, or per output row
const char* mask_group_name(MaskGroup g);
MaskGroup parse_mask_group(const std::string& name);  // "matrix" | "row"

// scores: f32 [rows, cols] (any device); prev_keep: u8 [rows, cols] on the same device, or undefined.
// Returns a u8 keep mask [rows, cols] on the scores' device.
//   unstructured: exactly pruned_count(group numel, sparsity) pruned per group.
//   N:M: exactly n pruned in every group of m consecutive columns of a row (cols % m == 0), whatever `group`.
// On CUDA the selection runs on the GPU (a radix select per group; groups of at most 32, like N:M, one element
// per lane of a warp); the only host traffic is a status word read back when prev_keep is given, to report an
// over-full group.
// `variant` names a mask_family() variant ("" = its selection).
Tensor select_mask(const Tensor& scores, const SparsityPattern& pattern, MaskGroup group,
                   const Tensor& prev_keep = {}, const std::string& variant = "");

// The primitive under select_mask: prune exactly `k` positions in every group (groups of `group`, or of m
// consecutive columns when group_cols > 0: then each group is [1, group_cols] of a row), forced first.
// 0 <= k <= group size.
Tensor select_lowest_k(const Tensor& scores, int64_t k, MaskGroup group, const Tensor& prev_keep = {},
                       const std::string& variant = "", int64_t group_cols = 0);

// The first group of prev_keep (u8, contiguous, groups of group_size consecutive elements) holding more than k
// zeros, on any device (one small device-to-host read).
OverfullGroup first_overfull_group(const Tensor& prev_keep, int64_t group_size, int64_t k);

// A score in the form the selection order compares (NaN -> +inf, -inf -> lowest finite, -0 -> +0).
float canonical_score(float s);

// Throws select_mask's "already has N pruned" error when a group of prev_keep (u8 [rows, cols], any device)
// holds more than k zeros; groups as in select_lowest_k. One small device-to-host read on CUDA.
void check_prev_keep_fits(const char* op, const Tensor& prev_keep, int64_t k, MaskGroup group,
                          int64_t group_cols = 0);

namespace detail {
#if PT_CUDA
// CUDA launchers (mask.cu). scores f32 contiguous [groups*group_size] laid out group after group (row groups:
// rows of the matrix, matrix: one group; group_cols: groups of group_cols within rows), keep u8 same layout.
// prev_keep may be null. Returns the index of the first group whose forced count exceeds k, or -1, and that
// count (read back only when prev_keep is given; otherwise -1 without a sync).
OverfullGroup cuda_select_lowest_k(const float* scores, const uint8_t* prev_keep, uint8_t* keep, int64_t groups,
                                   int64_t group_size, int64_t k);
#endif
}  // namespace detail

}  // namespace pt::prune
