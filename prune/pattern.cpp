// Sparsity patterns, exact counts and keep-mask measurements.
#include "prune/pattern.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "tensor/ops.h"

namespace pt::prune {

SparsityPattern SparsityPattern::unstructured(double s) {
  SparsityPattern p;
  p.sparsity = s;
  p.validate();
  return p;
}

SparsityPattern SparsityPattern::nm(int64_t n, int64_t m) {
  SparsityPattern p;
  p.n = n;
  p.m = m;
  p.sparsity = m > 0 ? double(n) / double(m) : 0.0;
  p.validate();
  return p;
}

std::string SparsityPattern::describe() const {
  if (is_nm()) return pt::detail::concat(n, ":", m);
  char buf[64];
  std::snprintf(buf, sizeof buf, "unstructured %g%%", sparsity * 100.0);
  return buf;
}

void SparsityPattern::validate() const {
  if (n != 0 || m != 0)
    PT_CHECK(n > 0 && m > 0 && n < m, "sparsity pattern: N:M = ", n, ":", m, " is invalid (need 0 < N < M, e.g. 2:4)");
  PT_CHECK(std::isfinite(sparsity) && sparsity >= 0.0 && sparsity < 1.0, "sparsity pattern: sparsity = ", sparsity,
           " is outside [0, 1) (the fraction of weights pruned)");
  if (n == 0 && m == 0) return;
  PT_CHECK(std::abs(sparsity - double(n) / double(m)) < 1e-12, "sparsity pattern: ", n, ":", m,
           " prunes ", double(n) / double(m), " of the weights, but sparsity = ", sparsity, " was given");
}

SparsityPattern parse_sparsity_pattern(const std::string& pattern, double sparsity) {
  if (pattern == "unstructured") {
    PT_CHECK(sparsity >= 0.0, "sparsity pattern 'unstructured': sparsity = ", sparsity,
             " must be given in [0, 1)");
    return SparsityPattern::unstructured(sparsity);
  }
  const size_t colon = pattern.find(':');
  int64_t n = 0, m = 0;
  bool ok = colon != std::string::npos && colon > 0 && colon + 1 < pattern.size();
  if (ok) {
    try {
      size_t used_n = 0, used_m = 0;
      n = std::stoll(pattern.substr(0, colon), &used_n);
      m = std::stoll(pattern.substr(colon + 1), &used_m);
      ok = used_n == colon && used_m == pattern.size() - colon - 1;
    } catch (const std::exception&) {
      ok = false;
    }
  }
  PT_CHECK(ok, "sparsity pattern '", pattern, "' is not understood (allowed: 'unstructured' or 'N:M' such as '2:4')");
  PT_CHECK(n > 0 && m > 0 && n < m, "sparsity pattern '", pattern, "': need 0 < N < M");
  const double implied = double(n) / double(m);
  if (sparsity < 0.0) return SparsityPattern::nm(n, m);
  PT_CHECK(std::abs(sparsity - implied) < 1e-9, "sparsity pattern '", pattern, "' prunes ", implied,
           " of the weights but sparsity = ", sparsity, " was given (give ", implied, " or leave it unset)");
  return SparsityPattern::nm(n, m);
}

int64_t pruned_count(int64_t numel, double sparsity) {
  PT_CHECK(numel >= 0, "pruned_count: numel = ", numel, " is negative");
  PT_CHECK(std::isfinite(sparsity) && sparsity >= 0.0 && sparsity <= 1.0, "pruned_count: sparsity = ", sparsity,
           " is outside [0, 1]");
  const int64_t k = int64_t(std::floor(sparsity * double(numel) + 1e-9));
  return k < numel ? k : numel;
}

void check_weight_matrix(const char* op, const Tensor& w, const char* arg) {
  PT_CHECK(w.defined(), op, ": ", arg, " is undefined");
  PT_CHECK(w.dtype() == DType::f32 && w.dim() == 2, op, ": ", arg, " is ", w.describe(),
           "; it must be an f32 matrix [rows, cols]");
}

void check_keep_mask(const char* op, const Tensor& keep, const Tensor& like, const char* arg) {
  if (!keep.defined()) return;
  PT_CHECK(keep.dtype() == DType::u8, op, ": ", arg, " is ", keep.describe(), "; masks are u8 (1 = keep, 0 = pruned)");
  PT_CHECK(keep.shape() == like.shape(), op, ": ", arg, " ", keep.describe(), " does not match ", like.describe());
  PT_CHECK(keep.device() == like.device(), op, ": ", arg, " ", keep.describe(), " is not on the device of ",
           like.describe());
}

int64_t mask_pruned_count(const Tensor& keep) {
  PT_CHECK(keep.defined() && keep.dtype() == DType::u8, "mask_pruned_count: keep must be a u8 mask, got ",
           keep.defined() ? keep.describe() : std::string("undefined"));
  if (keep.numel() == 0) return 0;
  // f64 sums count exactly far beyond any mask size (f32 would stop at 2^24); widened a block at a time, so the
  // f64 copy stays small beside an ffn-wide mask (8 bytes per weight).
  const Tensor flat = keep.contiguous().reshape({keep.numel()});
  constexpr int64_t kBlock = 1 << 18;
  int64_t kept = 0;
  for (int64_t i = 0; i < flat.numel(); i += kBlock)
    kept += int64_t(std::llround(sum_all(flat.narrow(0, i, std::min(kBlock, flat.numel() - i)).to(DType::f64)).item()));
  return keep.numel() - kept;
}

double mask_sparsity(const Tensor& keep) {
  const int64_t pruned = mask_pruned_count(keep);
  return keep.numel() == 0 ? 0.0 : double(pruned) / double(keep.numel());
}

bool is_nm_mask(const Tensor& keep, int64_t n, int64_t m, bool at_least) {
  PT_CHECK(keep.defined() && keep.dtype() == DType::u8 && keep.dim() == 2, "is_nm_mask: keep must be a u8 matrix, got ",
           keep.defined() ? keep.describe() : std::string("undefined"));
  PT_CHECK(n >= 0 && m > 0 && n <= m, "is_nm_mask: N:M = ", n, ":", m, " is invalid");
  if (keep.size(1) % m != 0) return false;
  const std::vector<uint8_t> v = keep.to_vector<uint8_t>();
  for (size_t g = 0; g < v.size(); g += size_t(m)) {
    int64_t zeros = 0;
    for (int64_t j = 0; j < m; ++j) zeros += v[g + size_t(j)] == 0;
    if (at_least ? zeros < n : zeros != n) return false;
  }
  return true;
}

bool mask_contains_pruned(const Tensor& new_keep, const Tensor& old_keep) {
  PT_CHECK(new_keep.defined() && old_keep.defined() && new_keep.shape() == old_keep.shape(),
           "mask_contains_pruned: masks must be defined and of one shape");
  const std::vector<uint8_t> a = new_keep.to_vector<uint8_t>(), b = old_keep.to_vector<uint8_t>();
  for (size_t i = 0; i < a.size(); ++i)
    if (b[i] == 0 && a[i] != 0) return false;
  return true;
}

}  // namespace pt::prune
