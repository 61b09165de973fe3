// The labs of the families the model runs: masked AdamW, the sparse linear forward, softmax, layer norm and
// attention.
#include <algorithm>
#include <cmath>

#include "lab/lab_family.h"
#include "nn/adamw.h"
#include "sparse/linear_family.h"
#include "tensor/ops.h"
#include "tensor/ops/op_families.h"

namespace pt::lab {

namespace {

using kernels::Problem;

// ---- adamw: one step over several tensors -------------------------------------------------------------------------
// dims: "n" elements split over "tensors" tensors of unequal sizes, "step" (the step count after this step);
// pattern "masked": every tensor has a keep-mask pruning about half.
class AdamWLab final : public LabFamily {
 public:
  kernels::FamilyBase& family() const override { return nn::adamw_family(); }
  std::vector<Problem> problems(Purpose purpose, Device device) const override {
    if (purpose == Purpose::test)
      return {problem("odd sizes", {{"n", 1001}, {"tensors", 3}, {"step", 1}}, "masked"),
              problem("odd sizes", {{"n", 1001}, {"tensors", 3}, {"step", 7}}),
              problem("one element", {{"n", 1}, {"tensors", 1}, {"step", 2}}, "masked"),
              problem("many tensors", {{"n", 4099}, {"tensors", 9}, {"step", 3}}, "masked")};
    const int64_t n = device == Device::cpu ? (int64_t(1) << 24) : (int64_t(1) << 26);
    return {problem("opt-125m-ish", {{"n", n}, {"tensors", 4}, {"step", 10}}),
            problem("opt-125m-ish", {{"n", n}, {"tensors", 4}, {"step", 10}}, "masked")};
  }
  // Per tensor: p, g, m, v and the mask; sizes 1 : 2 : 3 : … of n.
  Args make_args(const Problem& p, uint64_t seed, Device device) const override {
    const int64_t n = p.dim("n"), count = p.dim("tensors");
    Args args;
    int64_t done = 0;
    for (int64_t i = 0; i < count; ++i) {
      const int64_t size = i + 1 == count ? n - done : std::max<int64_t>(1, n * 2 * (i + 1) / (count * (count + 1)));
      done += size;
      const uint64_t s = seed + uint64_t(10 * i);
      const std::string t = std::to_string(i);
      const Tensor keep = p.pattern == "masked"
                              ? compare_scalar(random_uniform({size}, s + 4, device, 0, 1), 0.5, CompareOp::ge)
                              : Tensor();
      // p, m and v are 0 where pruned, as AdamW::set_mask leaves them (the family's precondition).
      const auto masked = [&](const Tensor& t) { return keep.defined() ? apply_mask(t, keep) : t; };
      args.push_back({"p" + t, Role::inout, masked(random_uniform({size}, s, device))});
      args.push_back({"g" + t, Role::input, random_uniform({size}, s + 1, device, -0.1, 0.1)});
      args.push_back({"m" + t, Role::inout, masked(random_uniform({size}, s + 2, device, -0.01, 0.01))});
      args.push_back({"v" + t, Role::inout, masked(random_uniform({size}, s + 3, device, 0.0, 1e-4))});
      args.push_back({"keep" + t, Role::input, keep});
    }
    return args;
  }
  Args run(const std::string& variant, const Problem& p, const Args& a) const override {
    static nn::AdamWFusedCache* cache = new nn::AdamWFusedCache;  // kept across runs, like an optimizer's
    nn::AdamWStepArgs step{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .cache = cache};
    for (size_t i = 0; i < a.size(); i += 5)
      step.params.push_back({a[i].t, a[i + 1].t, a[i + 2].t, a[i + 3].t, a[i + 4].t, i == 0 ? 0.1 : 0.0, p.dim("step")});
    nn::adamw_family().get(variant, a[0].t.device())(step);
    return {};
  }
};

// ---- sparse_linear: y = x·(W⊙M)ᵀ + b through a packed weight ------------------------------------------------------
class SparseLinearLab final : public LabFamily {
 public:
  kernels::FamilyBase& family() const override { return sparse::sparse_linear_family(); }
  std::vector<Problem> problems(Purpose purpose, Device device) const override {
    std::vector<Problem> out;
    if (purpose == Purpose::test) {
      std::vector<DType> dtypes = {DType::f32};
      if (device == Device::cuda) dtypes.push_back(DType::bf16);
      for (DType x : dtypes) {
        out.push_back(problem("decode", {{"tokens", 1}, {"out", 33}, {"in", 40}}, "unstructured 0.5", x));
        out.push_back(problem("odd", {{"tokens", 17}, {"out", 48}, {"in", 100}}, "unstructured 0.9", x));
        out.push_back(problem("2:4", {{"tokens", 5}, {"out", 16}, {"in", 64}}, "2:4", x));
        out.push_back(problem("2:4 decode", {{"tokens", 1}, {"out", 21}, {"in", 100}}, "2:4", x));
        out.push_back(problem("dense mask", {{"tokens", 3}, {"out", 7}, {"in", 12}}, "unstructured 0", x));
      }
      return out;
    }
    const int64_t h = device == Device::cpu ? 768 : 2048;
    const DType x = device == Device::cpu ? DType::f32 : DType::bf16;
    for (int64_t tokens : {int64_t(1), int64_t(16), int64_t(2048)})
      for (const char* pattern : {"unstructured 0.5", "unstructured 0.9", "2:4"})
        out.push_back(problem("fc1", {{"tokens", tokens}, {"out", 4 * h}, {"in", h}}, pattern, x));
    return out;
  }
  Args make_args(const Problem& p, uint64_t seed, Device device) const override {
    const int64_t out = p.dim("out"), in = p.dim("in");
    const Tensor draw = random_uniform({out, in}, seed, device, 0, 1);
    Tensor keep;
    if (p.pattern == "2:4") keep = prune_lowest(draw, 2, 4);
    else keep = compare_scalar(draw, sparse::pattern_sparsity(p.pattern), CompareOp::ge);
    return {{"x", Role::input, random_uniform({p.dim("tokens"), in}, seed + 1, device).to(p.dtype)},
            {"weight", Role::input, apply_mask(random_uniform({out, in}, seed + 2, device), keep)},
            {"keep", Role::input, keep},
            {"bias", Role::input, random_uniform({out}, seed + 3, device)}};
  }
  Args run(const std::string& variant, const Problem& p, const Args& a) const override {
    const auto packed = sparse::sparse_linear_family().get(variant, a[0].t.device())(a[1].t, a[2].t, "lab weight");
    return {{"y", Role::output, packed->forward(a[0].t, a[3].t)}};
  }
  // Timed: the forward alone, on a weight packed once (as a model packs it once for all its forward passes).
  std::function<Args()> timed_call(const std::string& variant, const Problem& p, const Args& a) const override {
    std::shared_ptr<const sparse::PackedLinearWeight> packed =
        sparse::sparse_linear_family().get(variant, a[0].t.device())(a[1].t, a[2].t, "lab weight");
    return [packed, a] { return Args{{"y", Role::output, packed->forward(a[0].t, a[3].t)}}; };
  }
  double tolerance(const std::string& variant, const Problem& p, Device device) const override {
    const auto& builtin = sparse::linear_kernel_names();  // the formats of packed_linear.h know their value dtype
    const bool half_values =
        std::find(builtin.begin(), builtin.end(), variant) != builtin.end()
            ? is_half(sparse::default_packed_dtype(sparse::parse_linear_kernel(variant), DType::f32, device))
            : family().find(variant)->reduced_precision;
    return half_values || is_half(p.dtype) ? 1e-2 : 1e-4;
  }

 private:
  // A keep mask pruning exactly n of every m consecutive inputs (the lowest draws).
  static Tensor prune_lowest(const Tensor& draw, int64_t n, int64_t m) {
    std::vector<float> d = draw.to_vector<float>();
    std::vector<uint8_t> keep(d.size(), 1);
    for (size_t g = 0; g < d.size(); g += size_t(m))
      for (int64_t j = 0; j < m; ++j) {
        int64_t rank = 0;
        for (int64_t i = 0; i < m; ++i) rank += d[g + size_t(i)] < d[g + size_t(j)] || (d[g + size_t(i)] == d[g + size_t(j)] && i < j);
        keep[g + size_t(j)] = rank < n ? 0 : 1;
      }
    return Tensor::from_vector(keep, draw.shape(), draw.device());
  }
};

// ---- softmax over the last dim of x [batch, tq, tk], causal or not -------------------------------------------------
class SoftmaxLab final : public LabFamily {
 public:
  kernels::FamilyBase& family() const override { return softmax_family(); }
  std::vector<Problem> problems(Purpose purpose, Device device) const override {
    std::vector<Problem> out;
    if (purpose == Purpose::test) {
      for (DType x : device == Device::cuda ? std::vector<DType>{DType::f32, DType::bf16} : std::vector<DType>{DType::f32}) {
        out.push_back(problem("odd rows", {{"batch", 1}, {"tq", 7}, {"tk", 33}}, "", x));
        out.push_back(problem("attention", {{"batch", 3}, {"tq", 17}, {"tk", 17}}, "causal", x));
        out.push_back(problem("with a past", {{"batch", 2}, {"tq", 5}, {"tk", 20}}, "causal", x));
        out.push_back(problem("wide rows", {{"batch", 1}, {"tq", 3}, {"tk", 5000}}, "", x));
      }
      return out;
    }
    if (device == Device::cpu) return {problem("opt-125m scores", {{"batch", 12}, {"tq", 512}, {"tk", 512}}, "causal")};
    return {problem("opt-1.3b scores", {{"batch", 32}, {"tq", 2048}, {"tk", 2048}}, "causal"),
            problem("opt-1.3b scores", {{"batch", 32}, {"tq", 2048}, {"tk", 2048}}, "causal", DType::bf16)};
  }
  Args make_args(const Problem& p, uint64_t seed, Device device) const override {
    return {{"x", Role::input,
             random_uniform({p.dim("batch"), p.dim("tq"), p.dim("tk")}, seed, device, -4, 4).to(p.dtype)}};
  }
  Args run(const std::string& variant, const Problem& p, const Args& a) const override {
    return {{"y", Role::output, softmax_family().get(variant, a[0].t.device())(a[0].t, p.pattern == "causal")}};
  }
};

// ---- layer_norm over the last dim ----------------------------------------------------------------------------------
class LayerNormLab final : public LabFamily {
 public:
  kernels::FamilyBase& family() const override { return layer_norm_family(); }
  std::vector<Problem> problems(Purpose purpose, Device device) const override {
    std::vector<Problem> out;
    if (purpose == Purpose::test) {
      for (DType x : device == Device::cuda ? std::vector<DType>{DType::f32, DType::bf16} : std::vector<DType>{DType::f32}) {
        out.push_back(problem("odd", {{"rows", 7}, {"cols", 33}}, "", x));
        out.push_back(problem("one row", {{"rows", 1}, {"cols", 768}}, "", x));
        out.push_back(problem("narrow", {{"rows", 50}, {"cols", 5}}, "", x));
      }
      return out;
    }
    if (device == Device::cpu) return {problem("opt-125m", {{"rows", 2048}, {"cols", 768}})};
    return {problem("opt-1.3b", {{"rows", 8192}, {"cols", 2048}}),
            problem("opt-1.3b", {{"rows", 8192}, {"cols", 2048}}, "", DType::bf16)};
  }
  Args make_args(const Problem& p, uint64_t seed, Device device) const override {
    const int64_t rows = p.dim("rows"), cols = p.dim("cols");
    return {{"x", Role::input, random_uniform({rows, cols}, seed, device, 2.0, 5.0).to(p.dtype)},  // mean far from 0
            {"weight", Role::input, random_uniform({cols}, seed + 1, device, 0.5, 1.5).to(p.dtype)},
            {"bias", Role::input, random_uniform({cols}, seed + 2, device).to(p.dtype)}};
  }
  Args run(const std::string& variant, const Problem& p, const Args& a) const override {
    const LayerNormOut o = layer_norm_family().get(variant, a[0].t.device())(a[0].t, a[1].t, a[2].t, 1e-5);
    return {{"y", Role::output, o.y}, {"mean", Role::output, o.mean}, {"rstd", Role::output, o.rstd}};
  }
};

// ---- attention: causal, for inference ----------------------------------------------------------------------------
class AttentionLab final : public LabFamily {
 public:
  kernels::FamilyBase& family() const override { return attention_family(); }
  std::vector<Problem> problems(Purpose purpose, Device device) const override {
    if (purpose == Purpose::test)
      return {problem("small", {{"B", 1}, {"H", 2}, {"Tq", 9}, {"Tk", 9}, {"D", 8}}),
              problem("odd", {{"B", 2}, {"H", 3}, {"Tq", 17}, {"Tk", 17}, {"D", 16}}),
              problem("with a past", {{"B", 1}, {"H", 2}, {"Tq", 3}, {"Tk", 20}, {"D", 8}}),
              problem("two query blocks", {{"B", 1}, {"H", 1}, {"Tq", 130}, {"Tk", 130}, {"D", 4}})};
    if (device == Device::cpu) return {problem("opt-125m", {{"B", 1}, {"H", 12}, {"Tq", 512}, {"Tk", 512}, {"D", 64}})};
    return {problem("opt-1.3b", {{"B", 1}, {"H", 32}, {"Tq", 2048}, {"Tk", 2048}, {"D", 64}})};
  }
  Args make_args(const Problem& p, uint64_t seed, Device device) const override {
    const int64_t B = p.dim("B"), H = p.dim("H"), D = p.dim("D");
    const double scale = 1.0 / std::sqrt(double(D));
    return {{"q", Role::input, random_uniform({B, H, p.dim("Tq"), D}, seed, device, -scale, scale).to(p.dtype)},
            {"k", Role::input, random_uniform({B, H, p.dim("Tk"), D}, seed + 1, device, -2, 2).to(p.dtype)},
            {"v", Role::input, random_uniform({B, H, p.dim("Tk"), D}, seed + 2, device).to(p.dtype)}};
  }
  Args run(const std::string& variant, const Problem& p, const Args& a) const override {
    return {{"context", Role::output, attention_family().get(variant, a[0].t.device())(a[0].t, a[1].t, a[2].t)}};
  }
};

}  // namespace

const LabFamily& adamw_lab() { static const AdamWLab lab; return lab; }
const LabFamily& sparse_linear_lab() { static const SparseLinearLab lab; return lab; }
const LabFamily& softmax_lab() { static const SoftmaxLab lab; return lab; }
const LabFamily& layer_norm_lab() { static const LayerNormLab lab; return lab; }
const LabFamily& attention_lab() { static const AttentionLab lab; return lab; }

}  // namespace pt::lab
