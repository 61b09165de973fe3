// The labs of the pruning families: the Hessian update, the damped inverse factor, the OBS sweep and mask selection.
#include <algorithm>
#include <cmath>

#include "lab/lab_family.h"
#include "prune/hessian.h"
#include "prune/mask.h"
#include "prune/obs_sweep.h"
#include "prune/sparsegpt.h"
#include "tensor/ops.h"

namespace pt::lab {

namespace {

using kernels::Problem;

// ---- hessian: H = alpha·XᵀX + beta·H ---------------------------------------------------------------------------
class HessianLab final : public LabFamily {
 public:
  kernels::FamilyBase& family() const override { return prune::hessian_family(); }
  std::vector<Problem> problems(Purpose purpose, Device device) const override {
    std::vector<Problem> out;
    for (DType x : {DType::f32, DType::bf16}) {
      if (purpose == Purpose::test) {
        out.push_back(problem("square", {{"tokens", 64}, {"d", 32}}, "", x));
        out.push_back(problem("odd", {{"tokens", 37}, {"d", 29}}, "", x));
        out.push_back(problem("one token", {{"tokens", 1}, {"d", 17}}, "", x));
        out.push_back(problem("chunks", {{"tokens", 300}, {"d", 8}}, "", x));  // > 256: more than one chunk
      } else if (device == Device::cpu) {
        out.push_back(problem("opt-125m", {{"tokens", 2048}, {"d", 768}}, "", x));
      } else {
        out.push_back(problem("opt-1.3b attn", {{"tokens", 8192}, {"d", 2048}}, "", x));
        out.push_back(problem("opt-1.3b fc2", {{"tokens", 8192}, {"d", 8192}}, "", x));
      }
    }
    return out;
  }
  Args make_args(const Problem& p, uint64_t seed, Device device) const override {
    const int64_t d = p.dim("d");
    const Tensor h = random_uniform({d, d}, seed, device, 0.0, 1.0);
    return {{"H", Role::inout, add(h, h.t())},  // symmetric, like a running Hessian
            {"X", Role::input, random_uniform({p.dim("tokens"), d}, seed + 1, device, -1.5, 1.5).to(p.dtype)}};
  }
  // The strict lower triangle is unspecified after an update: the upper one is mirrored onto it before comparing.
  Args run(const std::string& variant, const Problem& p, const Args& a) const override {
    prune::hessian_family().get(variant, a[0].t.device())(a[0].t, a[1].t, 0.25, 0.75);
    symmetrize_(a[0].t, /*from_upper=*/true);
    return {};
  }
  // bf16 activations are the inputs themselves: every variant multiplies the same values.
  double tolerance(const std::string& variant, const Problem& p, Device device) const override {
    return p.dtype == DType::f32 && family().find(variant)->reduced_precision ? 1e-2 : 1e-4;
  }
};

// ---- inverse_factor: U with Uᵀ·U = A⁻¹ ---------------------------------------------------------------------------
class InverseFactorLab final : public LabFamily {
 public:
  kernels::FamilyBase& family() const override { return prune::inverse_factor_family(); }
  std::vector<Problem> problems(Purpose purpose, Device device) const override {
    if (purpose == Purpose::test)
      return {problem("1x1", {{"d", 1}}), problem("odd", {{"d", 7}}), problem("block", {{"d", 32}}),
              problem("odd block", {{"d", 33}}), problem("larger", {{"d", 100}})};
    if (device == Device::cpu) return {problem("opt-125m", {{"d", 768}}), problem("opt-1.3b", {{"d", 2048}})};
    return {problem("opt-1.3b attn", {{"d", 2048}}), problem("opt-1.3b fc2", {{"d", 8192}})};
  }
  // A = XᵀX/n + 0.1·I with n = 2d: well conditioned (about 10), like a damped Hessian.
  Args make_args(const Problem& p, uint64_t seed, Device device) const override {
    const int64_t d = p.dim("d");
    const Tensor x = random_uniform({2 * d, d}, seed, device);
    const Tensor a = add(mul_scalar(matmul(x, x, true, false), 1.0 / double(2 * d)),
                         mul_scalar(Tensor::eye(d, DType::f32, device), 0.1));
    return {{"A", Role::input, a}};
  }
  Args run(const std::string& variant, const Problem& p, const Args& a) const override {
    const Tensor& A = a[0].t;
    const Tensor diagonal = A.as_strided({A.size(0)}, {A.size(0) + 1}, A.offset()).contiguous();  // A as it is
    return {{"U", Role::output, prune::inverse_factor_family().get(variant, A.device())(A, diagonal)}};
  }
};

// ---- obs_sweep: SparseGPT's in-block sweep ----------------------------------------------------------------------
// Patterns: "unstructured S" (the block's mask given) or "N:M" (chosen in the sweep); dims "prev" = 1 gives N:M a
// previous mask whose zeros are forced.
class ObsSweepLab final : public LabFamily {
 public:
  kernels::FamilyBase& family() const override { return prune::obs_sweep_family(); }
  std::vector<Problem> problems(Purpose purpose, Device device) const override {
    if (purpose == Purpose::test)
      return {problem("odd", {{"rows", 37}, {"B", 33}, {"prev", 0}}, "unstructured 0.5"),
              problem("one row", {{"rows", 1}, {"B", 16}, {"prev", 0}}, "unstructured 0.3"),
              problem("2:4", {{"rows", 19}, {"B", 64}, {"prev", 0}}, "2:4"),
              problem("2:4 forced", {{"rows", 9}, {"B", 32}, {"prev", 1}}, "2:4"),
              problem("4:8 odd rows", {{"rows", 5}, {"B", 40}, {"prev", 0}}, "4:8"),
              problem("widest", {{"rows", 33}, {"B", 256}, {"prev", 0}}, "unstructured 0.7")};
    if (device == Device::cpu)
      return {problem("opt-125m", {{"rows", 768}, {"B", 128}, {"prev", 0}}, "unstructured 0.5"),
              problem("opt-125m", {{"rows", 768}, {"B", 128}, {"prev", 0}}, "2:4")};
    return {problem("opt-1.3b fc1", {{"rows", 8192}, {"B", 128}, {"prev", 0}}, "unstructured 0.5"),
            problem("opt-1.3b fc1", {{"rows", 8192}, {"B", 128}, {"prev", 0}}, "2:4"),
            problem("opt-1.3b fc1 B=256", {{"rows", 8192}, {"B", 256}, {"prev", 0}}, "unstructured 0.5")};
  }
  Args make_args(const Problem& p, uint64_t seed, Device device) const override {
    const int64_t rows = p.dim("rows"), B = p.dim("B");
    const prune::SparsityPattern pattern = pattern_of(p);
    const Tensor x = random_uniform({2 * B, B}, seed, device);  // U from a well-conditioned SPD block
    const Tensor a = add(mul_scalar(matmul(x, x, true, false), 1.0 / double(2 * B)),
                         mul_scalar(Tensor::eye(B, DType::f32, device), 0.1));
    const Tensor U = cholesky(cholesky_inverse(cholesky(a)), /*upper=*/true);
    const Tensor draw = random_uniform({rows, B}, seed + 2, device, 0.0, 1.0);
    Tensor keep = compare_scalar(draw, pattern.is_nm() ? 0.0 : pattern.sparsity, CompareOp::ge);
    Tensor prev;
    if (pattern.is_nm() && p.dim("prev") == 1) {  // one forced zero in about a third of the groups: never over-full
      std::vector<uint8_t> v(size_t(rows * B), 1);
      const std::vector<float> u = random_uniform({rows * B / pattern.m}, seed + 3, Device::cpu, 0, 1).to_vector<float>();
      for (size_t g = 0; g < u.size(); ++g)
        if (u[g] < 0.33f) v[g * size_t(pattern.m) + size_t(u[g] * 3.0f * float(pattern.m))] = 0;
      prev = Tensor::from_vector(v, {rows, B}, device);
    }
    return {{"W1", Role::inout, random_uniform({rows, B}, seed + 1, device)},
            {"U1", Role::input, U},
            {"keep1", pattern.is_nm() ? Role::output : Role::input, keep},
            {"Err1", Role::output, Tensor::empty({rows, B}, DType::f32, device)},
            {"loss_rows", Role::inout, random_uniform({rows}, seed + 4, device, 0.0, 1.0)},
            {"prev_keep1", Role::input, prev}};
  }
  Args run(const std::string& variant, const Problem& p, const Args& a) const override {
    prune::obs_sweep_family().get(variant, a[0].t.device())(
        {a[0].t, a[1].t, a[2].t, a[3].t, a[4].t, a[5].t, pattern_of(p)});
    return {};
  }

 private:
  static prune::SparsityPattern pattern_of(const Problem& p) {
    if (p.pattern.rfind("unstructured ", 0) == 0) return prune::SparsityPattern::unstructured(std::stod(p.pattern.substr(13)));
    return prune::parse_sparsity_pattern(p.pattern, -1.0);
  }
};

// ---- mask: exactly k of every group -------------------------------------------------------------------------------
// Patterns "row S", "matrix S" (groups of a row, of the whole matrix) or "N:M"; dims "prev" (a previous mask whose
// zeros are forced) and "ties" (scores on a coarse grid with NaN, ±inf and -0 among them: the order's corner cases).
class MaskLab final : public LabFamily {
 public:
  kernels::FamilyBase& family() const override { return prune::mask_family(); }
  std::vector<Problem> problems(Purpose purpose, Device device) const override {
    if (purpose == Purpose::test)
      return {problem("odd rows", {{"rows", 37}, {"cols", 45}, {"prev", 0}, {"ties", 0}}, "row 0.5"),
              problem("ties", {{"rows", 16}, {"cols", 64}, {"prev", 0}, {"ties", 1}}, "row 0.7"),
              problem("matrix", {{"rows", 13}, {"cols", 29}, {"prev", 1}, {"ties", 1}}, "matrix 0.6"),
              problem("large group", {{"rows", 3}, {"cols", 5000}, {"prev", 1}, {"ties", 0}}, "row 0.9"),
              problem("2:4", {{"rows", 9}, {"cols", 40}, {"prev", 1}, {"ties", 1}}, "2:4"),
              problem("4:8", {{"rows", 7}, {"cols", 24}, {"prev", 0}, {"ties", 0}}, "4:8"),
              problem("none", {{"rows", 4}, {"cols", 6}, {"prev", 0}, {"ties", 0}}, "row 0.0")};
    const int64_t out = device == Device::cpu ? 768 : 2048;
    return {problem("wanda rows", {{"rows", out}, {"cols", 4 * out}, {"prev", 0}, {"ties", 0}}, "row 0.5"),
            problem("magnitude matrix", {{"rows", out}, {"cols", out}, {"prev", 1}, {"ties", 0}}, "matrix 0.5"),
            problem("2:4", {{"rows", 4 * out}, {"cols", out}, {"prev", 0}, {"ties", 0}}, "2:4")};
  }
  Args make_args(const Problem& p, uint64_t seed, Device device) const override {
    const int64_t rows = p.dim("rows"), cols = p.dim("cols");
    const auto [size, k] = groups_of(p);
    Tensor scores = random_uniform({rows, cols}, seed, device, -1.0, 1.0);
    if (p.dim("ties") == 1) {  // a grid of 9 values, and the corner cases of the order at fixed places
      scores = mul_scalar(add_scalar(mul_scalar(scores, 4.0), 0.5).to(DType::i64).to(DType::f32), 0.25);
      std::vector<float> v = scores.to_vector<float>();
      const float special[] = {NAN, INFINITY, -INFINITY, -0.0f};
      for (size_t i = 0; i < v.size(); i += 7) v[i] = special[(i / 7) % 4];
      scores = Tensor::from_vector(v, {rows, cols}, device);
    }
    Tensor prev;
    if (p.dim("prev") == 1 && k > 0) {  // the lowest k/2 of an unrelated draw: never more than k per group
      const Tensor other = random_uniform({rows, cols}, seed + 1, device);
      const bool matrix = size == rows * cols;
      prev = prune::select_lowest_k(other, k / 2, matrix ? prune::MaskGroup::matrix : prune::MaskGroup::row, {}, "",
                                    matrix || size == cols ? 0 : size);
    }
    return {{"scores", Role::input, scores},
            {"prev_keep", Role::input, prev},
            {"keep", Role::output, Tensor::empty({rows, cols}, DType::u8, device)}};
  }
  Args run(const std::string& variant, const Problem& p, const Args& a) const override {
    const auto [size, k] = groups_of(p);
    const prune::OverfullGroup bad =
        prune::mask_family().get(variant, a[0].t.device())({a[0].t, a[1].t, a[2].t, size, k});
    PT_CHECK(bad.group < 0, "mask lab: variant ", variant, " reports group ", bad.group, " over-full");
    return {};
  }

 private:
  static std::pair<int64_t, int64_t> groups_of(const Problem& p) {  // (group size, k)
    const int64_t rows = p.dim("rows"), cols = p.dim("cols");
    if (p.pattern.rfind("row ", 0) == 0) return {cols, prune::pruned_count(cols, std::stod(p.pattern.substr(4)))};
    if (p.pattern.rfind("matrix ", 0) == 0)
      return {rows * cols, prune::pruned_count(rows * cols, std::stod(p.pattern.substr(7)))};
    const prune::SparsityPattern nm = prune::parse_sparsity_pattern(p.pattern, -1.0);
    return {nm.m, nm.n};
  }
};

}  // namespace

const LabFamily& hessian_lab() { static const HessianLab lab; return lab; }
const LabFamily& inverse_factor_lab() { static const InverseFactorLab lab; return lab; }
const LabFamily& obs_sweep_lab() { static const ObsSweepLab lab; return lab; }
const LabFamily& mask_lab() { static const MaskLab lab; return lab; }

}  // namespace pt::lab
