// Kernel cases of `make compare`, project side (bench/reference/kernel_cases.py is the PyTorch side):
//   adamw          one AdamW step over the parameter tensors of an OPT model (real per-tensor shapes); with
//                  "masked", every decoder Linear weight carries a ~50% keep-mask (what pruning leaves)
//   matmul         C = A·B
//   sparse_linear  y = x·(W⊙M)ᵀ + b through a packed form (dense, masked, csr, bitmap, 2of4)
#include "bench/compare/compare_case.h"
#include "nn/adamw.h"
#include "sparse/packed_linear.h"
#include "tensor/ops.h"
#include "tensor/random.h"

namespace pt::comparison {
namespace {

struct ParamSpec {
  Shape shape;
  bool prunable;  // a decoder Linear weight
};

// Every parameter tensor of an OPT decoder in Hugging Face's order, embeddings included (unless "embeddings": false).
std::vector<ParamSpec> opt_param_specs(const json& p) {
  const int64_t h = param_int(p, "hidden"), f = param_int(p, "ffn"), layers = param_int(p, "layers");
  const bool embeddings = p.value("embeddings", true);
  std::vector<ParamSpec> s;
  if (embeddings) s = {{{param_int(p, "vocab"), h}, false}, {{param_int(p, "ctx") + 2, h}, false}};
  for (int64_t l = 0; l < layers; ++l) {
    for (int k = 0; k < 4; ++k) s.insert(s.end(), {{{h, h}, true}, {{h}, false}});  // q, k, v, out
    s.insert(s.end(), {{{h}, false}, {{h}, false}});
    s.insert(s.end(), {{{f, h}, true}, {{f}, false}, {{h, f}, true}, {{h}, false}});
    s.insert(s.end(), {{{h}, false}, {{h}, false}});
  }
  if (embeddings) s.insert(s.end(), {{{h}, false}, {{h}, false}});
  return s;
}

class AdamWCase : public CompareCase {
 public:
  AdamWCase(const json& p, Device dev) {
    Generator gen(0);
    nn::AdamWParamGroup decay{{}, p.value("weight_decay", 0.01), {}}, no_decay{{}, 0.0, {}};
    int64_t total = 0;
    for (const ParamSpec& spec : opt_param_specs(p)) {
      autograd::Variable v(Tensor::uniform(spec.shape, -0.05, 0.05, gen, DType::f32, dev), true);
      v.set_grad(Tensor::uniform(spec.shape, -1e-3, 1e-3, gen, DType::f32, dev));
      (spec.shape.size() == 2 ? decay : no_decay).params.push_back(v);
      total += v.data().numel();
    }
    nn::AdamWConfig cfg;
    cfg.kernel = p.value("kernel", std::string("fused"));  // a variant of nn::adamw_family()
    opt_ = std::make_unique<nn::AdamW>(std::vector<nn::AdamWParamGroup>{decay, no_decay}, cfg);
    if (p.value("masked", false)) {
      // Masks go on the decoder Linear weights: the 2-D tensors other than the two embeddings.
      const bool embeddings = p.value("embeddings", true);
      for (size_t i = 0, matrices = 0; i < opt_->num_params(); ++i) {
        if (opt_->param(i).dim() != 2) continue;
        if (!(embeddings && matrices++ < 2))
          opt_->set_mask(i, compare_scalar(Tensor::uniform(opt_->param(i).shape(), 0, 1, gen, DType::f32, dev), 0.5,
                                           CompareOp::ge));
      }
    }
    lr_ = p.value("lr", 1e-3);
    info["parameters"] = total;
    info["adamw_kernel"] = cfg.kernel;
  }
  json run() override {
    opt_->step(lr_);
    return json::object();
  }
  // Pruned weights must still be exactly 0 after the steps (the torch side checks the same).
  json check(const json&) override {
    double bad = 0;
    bool masked = false;
    for (size_t i = 0; i < opt_->num_params(); ++i) {
      if (!opt_->mask(i).defined()) continue;
      masked = true;
      const std::vector<float> w = opt_->param(i).data().to_vector<float>();
      const std::vector<uint8_t> keep = opt_->mask(i).to_vector<uint8_t>();
      for (size_t k = 0; k < w.size(); ++k) bad += !keep[k] && w[k] != 0.0f;
    }
    return masked ? json{{"pruned_nonzero", bad}} : json::object();
  }

 private:
  std::unique_ptr<nn::AdamW> opt_;
  double lr_ = 1e-3;
};

class MatmulCase : public CompareCase {
 public:
  MatmulCase(const json& p, Device dev) {
    Generator gen(1);
    const DType dt = param_dtype(p, DType::f32);
    a_ = Tensor::normal({param_int(p, "m"), param_int(p, "k")}, 0.0, 1.0, gen, DType::f32, dev).to(dt);
    b_ = Tensor::normal({param_int(p, "k"), param_int(p, "n")}, 0.0, 1.0, gen, DType::f32, dev).to(dt);
  }
  json run() override {
    c_ = matmul(a_, b_);
    return json::object();
  }

 private:
  Tensor a_, b_, c_;
};

// A 2:4 keep-mask: the two largest of u in every group of 4 along a row.
Tensor two_of_four_keep(const Tensor& u) {
  std::vector<float> v = u.to_vector<float>();
  std::vector<uint8_t> keep(v.size(), 0);
  for (size_t g = 0; g + 4 <= v.size(); g += 4) {
    size_t a = g, b = g + 1;
    if (v[b] > v[a]) std::swap(a, b);
    for (size_t j = g + 2; j < g + 4; ++j) {
      if (v[j] > v[a]) b = a, a = j;
      else if (v[j] > v[b]) b = j;
    }
    keep[a] = keep[b] = 1;
  }
  return Tensor::from_vector(keep, u.shape());
}

class SparseLinearCase : public CompareCase {
 public:
  SparseLinearCase(const json& p, Device dev) {
    const int64_t out = param_int(p, "out"), in = param_int(p, "in");
    const std::string form = p.at("format").get<std::string>();
    const sparse::LinearKernel kernel = sparse::parse_linear_kernel(form);
    const DType dt = param_dtype(p, dev == Device::cuda ? DType::f16 : DType::f32);
    Generator gen(42);
    const Tensor w = Tensor::normal({out, in}, 0.0, 0.02, gen, DType::f32, Device::cpu);
    const Tensor u = Tensor::uniform({out, in}, 0.0, 1.0, gen, DType::f32, Device::cpu);
    const Tensor keep = kernel == sparse::LinearKernel::two_four ? two_of_four_keep(u)
                                                                 : compare_scalar(u, p.value("sparsity", 0.0), CompareOp::ge);
    packed_ = sparse::pack_linear_weight(kernel, apply_mask(w, keep).to(dev).to(dt),
                                         kernel == sparse::LinearKernel::dense ? Tensor() : keep.to(dev), dt,
                                         "compare.weight");
    x_ = Tensor::normal({param_int(p, "tokens"), in}, 0.0, 1.0, gen, DType::f32, dev).to(dt);
    bias_ = Tensor::normal({out}, 0.0, 0.1, gen, DType::f32, dev).to(dt);
    info["stored_bytes"] = packed_->stored_bytes();
  }
  json run() override {
    y_ = packed_->forward(x_, bias_);
    return json::object();
  }

 private:
  std::shared_ptr<sparse::PackedLinearWeight> packed_;
  Tensor x_, bias_, y_;
};

}  // namespace

void add_kernel_cases(CaseRegistry& r) {
  r["adamw"] = [](const json& p, Device d) { return std::make_unique<AdamWCase>(p, d); };
  r["matmul"] = [](const json& p, Device d) { return std::make_unique<MatmulCase>(p, d); };
  r["sparse_linear"] = [](const json& p, Device d) { return std::make_unique<SparseLinearCase>(p, d); };
}

}  // namespace pt::comparison
