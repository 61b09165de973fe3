// AdamW: argument checks, state, the double-precision reference step and the unfused composition of tensor
// ops. The fused CUDA kernel is in adamw.cu.
#include "nn/adamw.h"

#include <cmath>

#include "nn/adamw_cpu.h"
#include "tensor/nvtx.h"
#include "tensor/ops.h"

namespace pt::nn {

AdamW::AdamW(std::vector<AdamWParamGroup> groups, AdamWConfig config) : config_(config) {
  PT_CHECK(config.beta1 >= 0 && config.beta1 < 1 && config.beta2 >= 0 && config.beta2 < 1, "AdamW: betas (",
           config.beta1, ", ", config.beta2, ") must lie in [0, 1)");
  PT_CHECK(config.eps >= 0, "AdamW: eps = ", config.eps, " must be >= 0");
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    AdamWParamGroup& g = groups[gi];
    PT_CHECK(g.weight_decay >= 0 && std::isfinite(g.weight_decay), "AdamW: group ", gi, " has weight_decay ",
             g.weight_decay, " (must be finite and >= 0)");
    PT_CHECK(g.names.empty() || g.names.size() == g.params.size(), "AdamW: group ", gi, " has ", g.names.size(),
             " names for ", g.params.size(), " parameters (give none or one per parameter)");
    for (size_t k = 0; k < g.params.size(); ++k) {
      PT_CHECK(g.params[k].defined(), "AdamW: parameter ", k, " of group ", gi, " is undefined");
      Slot s;
      s.var = g.params[k];
      s.name = g.names.empty() ? "" : g.names[k];
      s.weight_decay = g.weight_decay;
      slots_.push_back(std::move(s));
      const size_t i = slots_.size() - 1;
      const Tensor& p = slots_[i].var.data();
      PT_CHECK(p.dtype() == DType::f32, "AdamW: ", label(i), " is ", p.describe(),
               "; parameters must be f32 (master weights)");
      PT_CHECK(p.is_contiguous(), "AdamW: ", label(i), " ", p.describe(), " is not contiguous");
      for (size_t j = 0; j < i; ++j)
        PT_CHECK(!slots_[j].var.same(slots_[i].var), "AdamW: ", label(i), " is the same variable as ", label(j),
                 "; a parameter may appear in one group only");
      slots_[i].m = Tensor::zeros(p.shape(), DType::f32, p.device());
      slots_[i].v = Tensor::zeros(p.shape(), DType::f32, p.device());
    }
  }
}

std::string AdamW::label(size_t i) const {
  const std::string& n = slots_[i].name;
  return n.empty() ? pt::detail::concat("parameter ", i) : pt::detail::concat("parameter ", i, " ('", n, "')");
}

static void check_index(size_t i, size_t n, const char* what) {
  PT_CHECK(i < n, "AdamW::", what, ": index ", i, " out of range (", n, " parameters)");
}
const autograd::Variable& AdamW::param(size_t i) const { check_index(i, slots_.size(), "param"); return slots_[i].var; }
const std::string& AdamW::name(size_t i) const { check_index(i, slots_.size(), "name"); return slots_[i].name; }
double AdamW::weight_decay(size_t i) const { check_index(i, slots_.size(), "weight_decay"); return slots_[i].weight_decay; }
const Tensor& AdamW::mask(size_t i) const { check_index(i, slots_.size(), "mask"); return slots_[i].keep; }
int64_t AdamW::step_count(size_t i) const { check_index(i, slots_.size(), "step_count"); return slots_[i].step; }
const Tensor& AdamW::exp_avg(size_t i) const { check_index(i, slots_.size(), "exp_avg"); return slots_[i].m; }
const Tensor& AdamW::exp_avg_sq(size_t i) const { check_index(i, slots_.size(), "exp_avg_sq"); return slots_[i].v; }

// Writes exact +0.0 into t wherever keep == 0 (where() selects, so no -0.0 from a multiply).
static void zero_where_pruned(Tensor t, const Tensor& keep) { t.copy_(apply_mask(t, keep)); }  // t shares storage

void AdamW::set_mask(size_t i, const Tensor& keep) {
  check_index(i, slots_.size(), "set_mask");
  Slot& s = slots_[i];
  if (!keep.defined()) { s.keep = Tensor(); return; }
  const Tensor& p = s.var.data();
  PT_CHECK(keep.dtype() == DType::u8, "AdamW::set_mask: mask for ", label(i), " is ", keep.describe(),
           "; it must be u8 (1 = keep, 0 = pruned)");
  PT_CHECK(keep.shape() == p.shape(), "AdamW::set_mask: mask ", keep.describe(), " does not match ", label(i), " ",
           p.describe());
  PT_CHECK(keep.device() == p.device(), "AdamW::set_mask: mask ", keep.describe(), " is not on the device of ",
           label(i), " ", p.describe());
  s.keep = keep.contiguous();
  autograd::NoGradGuard no_grad;
  for (const Tensor& t : {p, s.m, s.v}) zero_where_pruned(t, s.keep);
}

void AdamW::zero_grad() {
  for (Slot& s : slots_) s.var.zero_grad();
}

void AdamW::check_grad(size_t i) const {
  const Tensor& p = slots_[i].var.data();
  const Tensor& g = slots_[i].var.grad();
  PT_CHECK(g.dtype() == DType::f32 && g.shape() == p.shape() && g.device() == p.device(), "AdamW::step: gradient ",
           g.describe(), " of ", label(i), " must be f32 with the parameter's shape and device (", p.describe(), ")");
}

void AdamW::step(double lr, const std::string& variant) {
  PT_CHECK(std::isfinite(lr) && lr >= 0, "AdamW::step: learning rate ", lr, " must be finite and >= 0");
  AdamWStepArgs args{.lr = lr, .beta1 = config_.beta1, .beta2 = config_.beta2, .eps = config_.eps,
                     .cache = &fused_cache_};
  std::vector<size_t> active;  // parameters with a gradient this step
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (!slots_[i].var.grad().defined()) continue;
    check_grad(i);
    active.push_back(i);
  }
  if (active.empty()) return;
  const std::string& name = variant.empty() ? config_.kernel : variant;
  const Device device = slots_[active[0]].var.data().device();
  const std::string problem = adamw_family().why_not(name.empty() ? adamw_family().resolve(device) : name, device);
  PT_CHECK(problem.empty(), "AdamW::step: ", label(active[0]), " is ", slots_[active[0]].var.data().describe(), ": ",
           problem);
  const auto& step_fn = adamw_family().get(name, device);
  autograd::NoGradGuard no_grad;
  for (size_t i : active) {
    Slot& s = slots_[i];
    ++s.step;
    args.params.push_back({s.var.data(), s.var.grad(), s.m, s.v, s.keep, s.weight_decay, s.step});
  }
  step_fn(args);
}

namespace detail {

namespace {

// The oracle. Each of torch's in-place tensor ops is computed in double and rounded to f32 once, where torch
// stores a tensor (p after the decay, m, v after mul_(beta2), v, p); scalars enter as f32 like in torch's f32
// kernels. Matching torch's rounding points keeps the three kernels within 1e-6 over hundreds of steps.
void step_reference(const AdamWStepArgs& a) {
  PT_NVTX_RANGE("train/adamw_reference");
  const double w1 = float(1.0 - a.beta1), b2 = float(a.beta2), w2 = float(1.0 - a.beta2);
  const double eps = float(a.eps);
  for (const AdamWParamStep& s : a.params) {
    PT_CHECK(!s.p.is_cuda(), "AdamW::step: variant 'reference' runs on CPU tensors only, got ", s.p.describe(),
             " (use 'unfused' or 'fused' on CUDA)");
    const Tensor g = s.g.contiguous();
    float* p = s.p.data<float>();
    const float* gp = g.data<float>();
    float* m = s.m.data<float>();
    float* v = s.v.data<float>();
    const uint8_t* keep = s.keep.defined() ? s.keep.data<uint8_t>() : nullptr;
    const double decay = float(1.0 - a.lr * s.weight_decay);
    const double bc1 = 1.0 - std::pow(a.beta1, double(s.step));
    const double bc2_sqrt = float(std::sqrt(1.0 - std::pow(a.beta2, double(s.step))));
    const double step_size = float(a.lr / bc1);
    for (int64_t k = 0, n = s.m.numel(); k < n; ++k) {
      if (keep && !keep[k]) { p[k] = 0.0f; m[k] = 0.0f; v[k] = 0.0f; continue; }
      const double gk = gp[k];
      const float p1 = float(p[k] * decay);                     // p.mul_(1 - lr*wd)
      const float m1 = float(m[k] + w1 * (gk - m[k]));          // m.lerp_(g, 1 - beta1)
      const float v1 = float(float(v[k] * b2) + w2 * gk * gk);  // v.mul_(beta2).addcmul_(g, g, 1 - beta2)
      const double denom = std::sqrt(double(v1)) / bc2_sqrt + eps;
      p[k] = float(p1 - step_size * (m1 / denom));              // p.addcdiv_(m, denom, -lr/bc1)
      m[k] = m1;
      v[k] = v1;
    }
  }
}

// The baseline of the fused kernel: one primitive op per line, each a full pass over memory.
void step_unfused(const AdamWStepArgs& a) {
  PT_NVTX_RANGE("train/adamw_unfused");
  const double b1 = a.beta1, b2 = a.beta2, eps = a.eps, lr = a.lr;
  for (const AdamWParamStep& s : a.params) {
    const Tensor& p = s.p;
    Tensor g = s.g;
    const double bc1 = 1.0 - std::pow(b1, double(s.step)), bc2_sqrt = std::sqrt(1.0 - std::pow(b2, double(s.step)));
    if (s.keep.defined()) g = apply_mask(g, s.keep);             // pruned gradients are ignored
    unary_(p, p, UnaryOp::mul_scalar, 1.0 - lr * s.weight_decay);  // decoupled decay, before the moments
    Tensor d = sub(g, s.m);                                        // m += (1-b1)(g - m)
    unary_(d, d, UnaryOp::mul_scalar, 1.0 - b1);
    binary_(s.m, s.m, d, BinaryOp::add);
    Tensor g2 = square(g);                                         // v = b2 v + (1-b2) g^2
    unary_(g2, g2, UnaryOp::mul_scalar, 1.0 - b2);
    unary_(s.v, s.v, UnaryOp::mul_scalar, b2);
    binary_(s.v, s.v, g2, BinaryOp::add);
    Tensor denom = sqrt(s.v);                                      // sqrt(v)/sqrt(bc2) + eps
    unary_(denom, denom, UnaryOp::mul_scalar, 1.0 / bc2_sqrt);
    unary_(denom, denom, UnaryOp::add_scalar, eps);
    Tensor update = div(s.m, denom);                               // p -= lr/bc1 * m/denom
    unary_(update, update, UnaryOp::mul_scalar, -lr / bc1);
    binary_(p, p, update, BinaryOp::add);
    // m and v stay exactly 0 where pruned (zero gradient, zero start); p is re-masked to be certain.
    if (s.keep.defined()) zero_where_pruned(p, s.keep);
  }
}

// One pass over all parameters: the multi-tensor CUDA kernel for CUDA tensors, the threaded, vectorised CPU
// loop for CPU tensors; both compute the same f32 function (nn/adamw_cpu.h).
void step_fused(const AdamWStepArgs& a) {
  PT_NVTX_RANGE("train/adamw_fused");
  std::vector<AdamWFusedTensor> on_cpu, on_cuda;
  std::vector<Tensor> grads;  // keeps contiguous copies (if any) alive until the step is done / queued
  grads.reserve(a.params.size());
  for (const AdamWParamStep& s : a.params) {
    grads.push_back(s.g.contiguous());
    const double bc1 = 1.0 - std::pow(a.beta1, double(s.step));
    const double bc2_sqrt = std::sqrt(1.0 - std::pow(a.beta2, double(s.step)));
    AdamWFusedTensor t{};
    t.p = s.p.data<float>();
    t.g = grads.back().data<float>();
    t.m = s.m.data<float>();
    t.v = s.v.data<float>();
    t.keep = s.keep.defined() ? s.keep.data<uint8_t>() : nullptr;
    t.n = s.m.numel();
    t.decay = float(1.0 - a.lr * s.weight_decay);
    t.step_size = float(a.lr / bc1);
    t.bc2_sqrt = float(bc2_sqrt);
    (s.m.is_cuda() ? on_cuda : on_cpu).push_back(t);
  }
  if (!on_cpu.empty()) adamw_cpu_step(on_cpu, AdamWCpuHyper(a.beta1, a.beta2, a.eps));
  if (on_cuda.empty()) return;
#if PT_CUDA
  AdamWFusedCache scratch;
  adamw_fused_step(on_cuda, a.beta1, a.beta2, a.eps, a.cache ? *a.cache : scratch);
#else
  PT_FAIL("AdamW::step: CUDA parameters in a CPU-only build");
#endif
}

}  // namespace

using AdamWVariant = kernels::Family<AdamWStep>::Variant;

AdamWVariant adamw_reference_variant() {
  return {{.name = "reference",
           .devices = {Device::cpu},
           .dtypes = {DType::f32},
           .summary = "per-element loop in double, rounded where torch stores a tensor"},
          step_reference};
}

AdamWVariant adamw_unfused_variant() {
  return {{.name = "unfused",
           .devices = {Device::cpu, Device::cuda},
           .dtypes = {DType::f32},
           .summary = "one tensor op per line, each a full pass over memory"},
          step_unfused};
}

AdamWVariant adamw_fused_variant() {
  return {{.name = "fused",
           .devices = {Device::cpu, Device::cuda},
           .dtypes = {DType::f32},
           .summary = "one pass over all parameters: CUDA multi-tensor kernel; CPU threaded AVX2 loop"},
          step_fused};
}

}  // namespace detail

std::vector<AdamWParamState> AdamW::state() const {
  std::vector<AdamWParamState> out;
  out.reserve(slots_.size());
  for (const Slot& s : slots_) out.push_back({s.name, s.step, s.m, s.v});
  return out;
}

void AdamW::load_state(const std::vector<AdamWParamState>& state) {
  PT_CHECK(state.size() == slots_.size(), "AdamW::load_state: ", state.size(), " entries for ", slots_.size(),
           " parameters");
  for (size_t i = 0; i < state.size(); ++i) {
    const AdamWParamState& st = state[i];
    Slot& s = slots_[i];
    PT_CHECK(st.name.empty() || s.name.empty() || st.name == s.name, "AdamW::load_state: entry ", i, " is named '",
             st.name, "' but ", label(i), " is expected there");
    PT_CHECK(st.step >= 0, "AdamW::load_state: entry ", i, " has step ", st.step);
    for (const Tensor* t : {&st.exp_avg, &st.exp_avg_sq})
      PT_CHECK(t->defined() && t->shape() == s.m.shape(), "AdamW::load_state: entry ", i, " has state ",
               t->defined() ? t->describe() : std::string("undefined"), " for ", label(i), " ", s.m.describe());
  }
  autograd::NoGradGuard no_grad;
  for (size_t i = 0; i < state.size(); ++i) {
    Slot& s = slots_[i];
    s.step = state[i].step;
    s.m.copy_(state[i].exp_avg.to(s.m.device()));
    s.v.copy_(state[i].exp_avg_sq.to(s.v.device()));
    if (s.keep.defined()) { zero_where_pruned(s.m, s.keep); zero_where_pruned(s.v, s.keep); }
  }
}

// ---- gradient utilities ------------------------------------------------------------------------------

static std::vector<Tensor> defined_grads(const std::vector<autograd::Variable*>& params, const char* op) {
  std::vector<Tensor> grads;
  for (size_t i = 0; i < params.size(); ++i) {
    PT_CHECK(params[i] && params[i]->defined(), op, ": parameter ", i, " is null or undefined");
    if (params[i]->grad().defined()) grads.push_back(params[i]->grad());
  }
  return grads;
}

double clip_grad_norm(const std::vector<autograd::Variable*>& params, double max_norm) {
  PT_CHECK(max_norm > 0 && std::isfinite(max_norm), "clip_grad_norm: max_norm = ", max_norm,
           " must be finite and > 0");
  std::vector<Tensor> grads = defined_grads(params, "clip_grad_norm");
  if (grads.empty()) return 0.0;
  const double norm = global_norm(grads).item();
  const double coef = max_norm / (norm + 1e-6);  // torch: non-finite norms give 0 or NaN grads, no error
  if (coef < 1.0)
    for (const Tensor& g : grads) unary_(g, g, UnaryOp::mul_scalar, coef);
  return norm;
}

double grad_norm(const std::vector<autograd::Variable*>& params) {
  std::vector<Tensor> grads = defined_grads(params, "grad_norm");
  return grads.empty() ? 0.0 : global_norm(grads).item();
}

void scale_grads(const std::vector<autograd::Variable*>& params, double factor) {
  for (const Tensor& g : defined_grads(params, "scale_grads")) unary_(g, g, UnaryOp::mul_scalar, factor);
}

void accumulate_grad(autograd::Variable& var, const Tensor& g) {
  PT_CHECK(var.defined() && g.defined(), "accumulate_grad: undefined variable or gradient");
  PT_CHECK(g.shape() == var.shape() && g.dtype() == var.dtype() && g.device() == var.device(),
           "accumulate_grad: gradient ", g.describe(), " does not match the variable ", var.data().describe());
  if (!var.grad().defined()) var.set_grad(g.clone());
  else binary_(var.grad(), var.grad(), g, BinaryOp::add);
}

}  // namespace pt::nn
