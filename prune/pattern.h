// Sparsity patterns (unstructured fraction or N:M), the one rule for exact pruned counts, and measurements of a
// keep mask. (Which kernel runs a pruning step is chosen per family: tensor/kernel_registry.h, prune/kernel_families.cpp.)
//
// Masks everywhere in prune/ are u8 KEEP masks (1 = kept, 0 = pruned), the convention of nn::Linear's
// weight_mask. Weights are f32 [out, in] = [rows, cols]; an N:M group is m consecutive input columns of one
// row, n of which are pruned (2:4 = two zeros in every four).
#pragma once
#include <cstdint>
#include <string>

#include "tensor/tensor.h"

namespace pt::prune {

struct SparsityPattern {
  double sparsity = 0.0;  // fraction pruned in [0, 1); for N:M it equals n/m
  int64_t n = 0, m = 0;   // 0, 0 = unstructured

  bool is_nm() const { return m != 0; }
  static SparsityPattern unstructured(double s);  // validated
  static SparsityPattern nm(int64_t n, int64_t m);  // validated; sparsity = n/m
  std::string describe() const;  // "unstructured 50%" / "2:4"
  void validate() const;         // throws pt::Error saying what is allowed
};

// "unstructured" | "N:M" (e.g. "2:4"). For N:M, `sparsity` must equal n/m, or be negative meaning "take n/m";
// anything else is an error naming both.
SparsityPattern parse_sparsity_pattern(const std::string& pattern, double sparsity);

// The exact number of weights pruned out of `numel` at `sparsity`: floor(sparsity*numel + 1e-9). The epsilon
// keeps 0.7*10 = 6.9999999 from giving 6. Used by every method so their totals agree.
int64_t pruned_count(int64_t numel, double sparsity);

// Fraction of zeros in a u8 keep mask (any device).
double mask_sparsity(const Tensor& keep);
// Number of zeros (pruned positions) in a u8 keep mask (any device).
int64_t mask_pruned_count(const Tensor& keep);
// True when keep is [rows, cols] with cols % m == 0 and every group of m consecutive columns in a row has
// exactly n zeros (at_least = true: n or more zeros).
bool is_nm_mask(const Tensor& keep, int64_t n, int64_t m, bool at_least = false);
// True when every position pruned in old_keep is also pruned in new_keep (the pruned set only grows).
bool mask_contains_pruned(const Tensor& new_keep, const Tensor& old_keep);

// Argument checks shared by prune/: errors name the operation, the argument and what is allowed.
void check_weight_matrix(const char* op, const Tensor& w, const char* arg);  // defined f32 2-D
// keep: undefined, or u8 with `like`'s shape and device.
void check_keep_mask(const char* op, const Tensor& keep, const Tensor& like, const char* arg);

}  // namespace pt::prune
