// AdamW (reference, unfused, fused), masked AdamW, gradient clipping and learning-rate schedules.
// The oracle is torch (tests/golden/adamw, made by make_adamw_golden.py); the reference kernel (double
// loop) is then the oracle for the unfused and fused kernels on odd shapes, masks and many steps.
#include <cmath>
#include <cstring>

#include "nn/adamw.h"
#include "nn/adamw_cpu.h"
#include "nn/lr_schedule.h"
#include "nn/safetensors.h"
#include "tests/test_util.h"

namespace pt::nn {
namespace {

using autograd::Variable;

// max|actual - expected| / max|expected| over one tensor (absolute when expected is all zero).
double rel_err(const Tensor& actual, const Tensor& expected) {
  EXPECT_EQ(actual.shape(), expected.shape());
  auto a = actual.to_vector<double>(), e = expected.to_vector<double>();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::isnan(a[i]) ? INFINITY : std::abs(a[i] - e[i]));
    scale = std::max(scale, std::abs(e[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

bool is_positive_zero(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  return bits == 0;
}

// ---- (1) torch golden -----------------------------------------------------------------------------

class AdamWGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(AdamWGolden, MatchesTorchStepForStep) {
  SafetensorsFile f(pt::test::source_dir() + "/tests/golden/adamw/adamw_steps.safetensors");
  const auto& meta = f.metadata();
  auto num = [&](const char* key) { return std::stod(meta.at(key)); };
  const int64_t steps = std::stoll(meta.at("total_steps"));
  Variable w(f.read("init.weight", DType::f32), true), b(f.read("init.bias", DType::f32), true);
  AdamWConfig cfg{num("beta1"), num("beta2"), num("eps"), GetParam()};
  AdamW opt({{{w}, num("weight_decay"), {"weight"}}, {{b}, 0.0, {"bias"}}}, cfg);
  LrSchedule sched{LrScheduleKind::linear, num("base_lr"), std::stoll(meta.at("warmup_steps")), steps, 0.0};
  const auto lrs = f.read("lr", DType::f64).to_vector<double>();
  const auto norms = f.read("grad_norm", DType::f64).to_vector<double>();
  double worst_p = 0, worst_m = 0, worst_v = 0, worst_lr = 0, worst_norm = 0;
  for (int64_t s = 0; s < steps; ++s) {
    const std::string k = std::to_string(s);
    w.set_grad(f.read("grad.weight." + k, DType::f32));
    b.set_grad(f.read("grad.bias." + k, DType::f32));
    const double norm = clip_grad_norm({&w, &b}, num("max_norm"));
    const double lr = sched.lr_at(s);
    worst_norm = std::max(worst_norm, std::abs(norm - norms[s]) / norms[s]);
    worst_lr = std::max(worst_lr, std::abs(lr - lrs[s]) / num("base_lr"));
    opt.step(lr);
    for (size_t i = 0; i < 2; ++i) {
      const std::string n = i == 0 ? "weight" : "bias";
      SCOPED_TRACE("step " + k + " " + n);
      const double ep = rel_err(opt.param(i).data(), f.read("step" + k + "." + n, DType::f32));
      const double em = rel_err(opt.exp_avg(i), f.read("step" + k + ".exp_avg." + n, DType::f32));
      const double ev = rel_err(opt.exp_avg_sq(i), f.read("step" + k + ".exp_avg_sq." + n, DType::f32));
      EXPECT_LT(ep, 1e-6);
      EXPECT_LT(em, 1e-6);
      EXPECT_LT(ev, 1e-6);
      worst_p = std::max(worst_p, ep), worst_m = std::max(worst_m, em), worst_v = std::max(worst_v, ev);
      EXPECT_EQ(opt.step_count(i), s + 1);
    }
    opt.zero_grad();
  }
  EXPECT_LT(worst_norm, 1e-6);
  EXPECT_LT(worst_lr, 1e-12);
  std::printf("  [%s] worst relative error over %lld steps: param %.2e, exp_avg %.2e, exp_avg_sq %.2e, lr %.2e, "
              "norm %.2e\n", GetParam().c_str(), (long long)steps, worst_p, worst_m, worst_v, worst_lr,
              worst_norm);
}

// Every variant of the adamw family that runs on the CPU (a new one is checked against torch without a new line).
INSTANTIATE_TEST_SUITE_P(Cpu, AdamWGolden, ::testing::ValuesIn(adamw_family().names_on(Device::cpu)),
                         [](const auto& info) { return info.param; });

// ---- helpers for masked, multi-tensor runs -----------------------------------------------------------

// Odd sizes hit the vector tails; {0} and {0, 7} are empty; 40000 spans several fused chunks.
const std::vector<Shape> kShapes = {{1023}, {17, 33}, {0}, {4}, {3}, {64, 64}, {1, 5}, {40000}, {0, 7}, {2, 2, 9}};

struct Model {
  std::vector<Variable> vars;
  std::vector<Tensor> masks;  // u8, ~50% kept
};

Model make_model(uint64_t seed, bool offset_views = false) {
  Model m;
  for (size_t i = 0; i < kShapes.size(); ++i) {
    Tensor p = test::random_tensor(kShapes[i], seed + i);
    if (offset_views && p.numel() > 0) {  // contiguous view 1 float into its storage: not 16-byte aligned
      Tensor base = test::random_tensor({p.numel() + 1}, seed + 100 + i);
      p = base.narrow(0, 1, p.numel()).view(kShapes[i]);
    }
    m.vars.emplace_back(p, true);
    Generator g(seed + 1000 + i);
    m.masks.push_back(compare_scalar(Tensor::uniform(kShapes[i], 0, 1, g), 0.5, CompareOp::lt));
  }
  return m;
}

Model copy_to(const Model& src, Device dev) {
  Model m;
  for (const Variable& v : src.vars) m.vars.emplace_back(v.data().clone().to(dev), true);
  for (const Tensor& k : src.masks) m.masks.push_back(k.clone().to(dev));
  return m;
}

// Like copy_to(cuda), but every parameter and mask is a contiguous view one element into its storage, so no
// pointer is 16-byte (or 4-byte) aligned and the fused kernel must take its scalar path.
Model offset_copy_cuda(const Model& src) {
  Model m;
  auto offset_view = [](const Tensor& t) {
    Tensor base = Tensor::zeros({t.numel() + 1}, t.dtype(), Device::cuda);
    Tensor view = base.narrow(0, 1, t.numel()).view(t.shape());
    view.copy_(t);
    return view;
  };
  for (const Variable& v : src.vars) m.vars.emplace_back(offset_view(v.data()), true);
  for (const Tensor& k : src.masks) m.masks.push_back(offset_view(k));
  return m;
}

// Two groups (decay 0.1 and 0.01) over the model's parameters, with every mask set.
AdamW make_optimizer(Model& m, const std::string& kernel, bool masked = true) {
  const size_t half = m.vars.size() / 2;
  AdamWParamGroup g0{{m.vars.begin(), m.vars.begin() + half}, 0.1, {}};
  AdamWParamGroup g1{{m.vars.begin() + half, m.vars.end()}, 0.01, {}};
  AdamW opt({g0, g1}, AdamWConfig{0.9, 0.999, 1e-8, kernel});
  if (masked)
    for (size_t i = 0; i < m.masks.size(); ++i) opt.set_mask(i, m.masks[i]);
  return opt;
}

// Fresh random gradients for step s, everywhere (also where pruned: the optimizer must ignore them).
void set_grads(Model& m, int s) {
  for (size_t i = 0; i < m.vars.size(); ++i)
    m.vars[i].set_grad(test::random_tensor(m.vars[i].shape(), 7000 + 100 * s + i, -1, 1, DType::f32, m.vars[i].device()));
}

void expect_close(const AdamW& a, const AdamW& b, const std::string& what) {
  for (size_t i = 0; i < a.num_params(); ++i) {
    SCOPED_TRACE(what + ", parameter " + std::to_string(i));
    EXPECT_LT(rel_err(a.param(i).data(), b.param(i).data()), 1e-6);
    EXPECT_LT(rel_err(a.exp_avg(i), b.exp_avg(i)), 1e-6);
    EXPECT_LT(rel_err(a.exp_avg_sq(i), b.exp_avg_sq(i)), 1e-6);
  }
}

// Every pruned position holds exactly +0.0 in p, m and v; kept positions moved off zero somewhere.
void expect_pruned_exact_zero(const AdamW& opt, const std::string& what) {
  for (size_t i = 0; i < opt.num_params(); ++i) {
    auto keep = opt.mask(i).to_vector<uint8_t>();
    auto p = opt.param(i).data().to_vector<float>(), m = opt.exp_avg(i).to_vector<float>(),
         v = opt.exp_avg_sq(i).to_vector<float>();
    size_t bad = 0;
    for (size_t k = 0; k < keep.size(); ++k)
      if (!keep[k] && !(is_positive_zero(p[k]) && is_positive_zero(m[k]) && is_positive_zero(v[k]))) ++bad;
    EXPECT_EQ(bad, 0u) << what << ": parameter " << i << " has pruned positions that are not exactly 0";
  }
}

// ---- (2) masked, CPU ------------------------------------------------------------------------------

TEST(AdamWMasked, ReferenceEqualsUnfusedAndPrunedStayExactlyZero) {
  Model a = make_model(11), b = copy_to(a, Device::cpu);
  AdamW ref = make_optimizer(a, "reference"), unf = make_optimizer(b, "unfused");
  for (int s = 0; s < 100; ++s) {
    set_grads(a, s);
    set_grads(b, s);
    ref.step(1e-2);
    unf.step(1e-2);
    if (s == 0 || s == 9) expect_close(ref, unf, "step " + std::to_string(s + 1));
  }
  expect_close(ref, unf, "step 100");
  expect_pruned_exact_zero(ref, "reference");
  expect_pruned_exact_zero(unf, "unfused");
  EXPECT_GT(std::abs(ref.param(0).data().to_vector<float>()[0]) + std::abs(ref.exp_avg(0).to_vector<float>()[1]), 0);
}

TEST(AdamWMasked, UnmaskedReferenceEqualsUnfused) {
  Model a = make_model(12), b = copy_to(a, Device::cpu);
  AdamW ref = make_optimizer(a, "reference", false), unf = make_optimizer(b, "unfused", false);
  for (int s = 0; s < 20; ++s) {
    set_grads(a, s);
    set_grads(b, s);
    ref.step(3e-3);
    unf.step(3e-3);
  }
  expect_close(ref, unf, "step 20");
}

TEST(AdamWState, SkipsParametersWithoutGradAndResumesBitExactly) {
  Model a = make_model(21);
  AdamW opt = make_optimizer(a, "unfused");
  for (int s = 0; s < 3; ++s) { set_grads(a, s); opt.step(1e-2); }
  a.vars[1].zero_grad();  // parameter 1 takes no step now, like torch
  opt.step(1e-2);
  EXPECT_EQ(opt.step_count(0), 4);
  EXPECT_EQ(opt.step_count(1), 3);

  // Checkpoint: parameters and optimizer state, copied.
  std::vector<AdamWParamState> saved = opt.state();
  Model b = copy_to(a, Device::cpu);
  for (AdamWParamState& st : saved) { st.exp_avg = st.exp_avg.clone(); st.exp_avg_sq = st.exp_avg_sq.clone(); }
  AdamW resumed = make_optimizer(b, "unfused");
  resumed.load_state(saved);
  for (int s = 4; s < 8; ++s) {
    set_grads(a, s);
    set_grads(b, s);
    opt.step(5e-3);
    resumed.step(5e-3);
  }
  for (size_t i = 0; i < opt.num_params(); ++i) {
    EXPECT_TRUE(test::tensors_equal(resumed.param(i).data(), opt.param(i).data())) << "parameter " << i;
    EXPECT_TRUE(test::tensors_equal(resumed.exp_avg(i), opt.exp_avg(i)));
    EXPECT_TRUE(test::tensors_equal(resumed.exp_avg_sq(i), opt.exp_avg_sq(i)));
    EXPECT_EQ(resumed.step_count(i), opt.step_count(i));
  }
}

// ---- (2b) the CPU fused step: f32 like the CUDA kernel, within 1e-6 of the reference -------------------

// Odd shapes (vector tails), empty tensors, unaligned views, masked and unmasked, and one tensor big enough to be
// split across threads, over many steps.
TEST(AdamWCpuFused, MatchesTheReferenceOverManySteps) {
  for (bool masked : {true, false})
    for (bool offset : {false, true}) {
      SCOPED_TRACE(std::string(masked ? "masked" : "unmasked") + (offset ? ", unaligned views" : ""));
      Model a = make_model(31, offset), b = make_model(31, offset);
      a.vars.emplace_back(test::random_tensor({140007}, 77), true);  // several parallel chunks plus a tail
      b.vars.emplace_back(test::random_tensor({140007}, 77), true);
      Generator g(78);
      const Tensor big_keep = compare_scalar(Tensor::uniform({140007}, 0, 1, g), 0.3, CompareOp::ge);
      a.masks.push_back(big_keep);
      b.masks.push_back(big_keep.clone());
      AdamW ref = make_optimizer(a, "reference", masked), fus = make_optimizer(b, "fused", masked);
      for (int s = 0; s < 40; ++s) {
        set_grads(a, s);
        set_grads(b, s);
        ref.step(s % 2 ? 3e-2 : 7e-3);
        fus.step(s % 2 ? 3e-2 : 7e-3);
        if (s == 0 || s == 39) expect_close(ref, fus, "step " + std::to_string(s + 1));
      }
      if (masked) expect_pruned_exact_zero(fus, "fused");
    }
}

// The AVX2 lanes and the scalar loop (tails, CPUs without AVX2) are one function: equal bit for bit, masked and
// unmasked, on lengths that leave tails and on values that exercise every operation (decay, zero moments).
TEST(AdamWCpuFused, VectorLanesEqualTheScalarLoopBitForBit) {
  for (bool masked : {false, true}) {
    const int64_t n = 3 * 32768 + 13;
    std::vector<float> p0 = test::random_tensor({n}, 81).to_vector<float>(), g = test::random_tensor({n}, 82).to_vector<float>();
    std::vector<float> m0 = test::random_tensor({n}, 83, -0.1, 0.1).to_vector<float>();
    std::vector<float> v0 = test::random_tensor({n}, 84, 0.0, 0.01).to_vector<float>();
    std::vector<uint8_t> keep(static_cast<size_t>(n));
    for (size_t k = 0; k < keep.size(); ++k) keep[k] = uint8_t(random_bits(85, k) % 3 != 0);
    std::vector<float> p1 = p0, m1 = m0, v1 = v0, p2 = p0, m2 = m0, v2 = v0;
    auto desc = [&](std::vector<float>& p, std::vector<float>& m, std::vector<float>& v) {
      detail::AdamWFusedTensor t{};
      t.p = p.data(), t.g = g.data(), t.m = m.data(), t.v = v.data(), t.keep = masked ? keep.data() : nullptr;
      t.n = n, t.decay = float(1.0 - 1e-2 * 0.1), t.step_size = float(1e-2 / (1.0 - 0.9 * 0.9)),
      t.bc2_sqrt = float(std::sqrt(1.0 - 0.999 * 0.999));
      return std::vector<detail::AdamWFusedTensor>{t};
    };
    const detail::AdamWCpuHyper h(0.9, 0.999, 1e-8);
    detail::adamw_cpu_step(desc(p1, m1, v1), h, /*simd=*/true);
    detail::adamw_cpu_step(desc(p2, m2, v2), h, /*simd=*/false);
    EXPECT_EQ(std::memcmp(p1.data(), p2.data(), p1.size() * 4), 0) << (masked ? "masked" : "unmasked") << " p";
    EXPECT_EQ(std::memcmp(m1.data(), m2.data(), m1.size() * 4), 0) << (masked ? "masked" : "unmasked") << " m";
    EXPECT_EQ(std::memcmp(v1.data(), v2.data(), v1.size() * 4), 0) << (masked ? "masked" : "unmasked") << " v";
    EXPECT_NE(std::memcmp(p1.data(), p0.data(), p1.size() * 4), 0);  // the step moved something
  }
}

TEST(AdamWCpuFused, PrunedPositionsIgnoreNonFiniteGradients) {
  Model a = make_model(41);
  AdamW fus = make_optimizer(a, "fused");
  set_grads(a, 0);
  for (size_t i = 0; i < a.vars.size(); ++i) {  // poison every pruned gradient entry
    std::vector<float> g = a.vars[i].grad().to_vector<float>();
    const std::vector<uint8_t> keep = a.masks[i].to_vector<uint8_t>();
    for (size_t k = 0; k < g.size(); ++k)
      if (!keep[k]) g[k] = k % 2 ? NAN : INFINITY;
    a.vars[i].set_grad(Tensor::from_vector(g, a.vars[i].shape()));
  }
  fus.step(1e-2);
  expect_pruned_exact_zero(fus, "fused");
}

// ---- (5) errors ------------------------------------------------------------------------------------

TEST(AdamWErrors, NamesWhatIsWrong) {
  Variable w(test::random_tensor({3, 4}, 1), true);
  AdamW opt({{{w}, 0.1, {"fc.weight"}}});
  w.set_grad(test::random_tensor({3, 4}, 2));
  test::expect_error([&] { opt.set_mask(0, Tensor::ones({4, 3}, DType::u8)); }, "does not match");
  test::expect_error([&] { opt.set_mask(0, Tensor::ones({3, 4}, DType::f32)); }, "must be u8");
  test::expect_error([&] { opt.step(-1.0); }, "learning rate");
  test::expect_error([&] { opt.load_state({}); }, "0 entries for 1");
  w.set_grad(test::random_tensor({3, 4}, 2, -1, 1, DType::f64));
  test::expect_error([&] { opt.step(1e-3); }, "fc.weight");
  test::expect_error([&] { AdamW({{{w, w}, 0.0, {}}}); }, "same variable");
  test::expect_error([&] { AdamW({{{Variable(test::random_tensor({2}, 3, -1, 1, DType::f64), true)}, 0.0, {}}}); },
                     "f32");
  w.set_grad(test::random_tensor({3, 4}, 2));
  test::expect_error([&] { opt.step(1e-3, "fast"); }, "kernel family adamw has no variant 'fast' (registered: reference");
  EXPECT_EQ(opt.step_count(0), 0);  // a refused step changes nothing
}

// ---- (4) clipping, gradient accumulation, schedules ------------------------------------------------------

TEST(ClipGradNorm, MatchesNaiveNormAndScales) {
  std::vector<Variable> vars;
  for (int i = 0; i < 3; ++i) vars.emplace_back(test::random_tensor({5 + i, 7}, 30 + i), true);
  vars.emplace_back(test::random_tensor({4}, 40), true);  // no gradient: ignored
  std::vector<Tensor> grads;
  double sq = 0;
  for (int i = 0; i < 3; ++i) {
    grads.push_back(test::random_tensor({5 + i, 7}, 50 + i, -2, 2));
    for (double x : grads.back().to_vector<double>()) sq += x * x;
    vars[i].set_grad(grads.back().clone());
  }
  const double naive = std::sqrt(sq);
  std::vector<Variable*> ptrs = {&vars[0], &vars[1], &vars[2], &vars[3]};
  EXPECT_NEAR(clip_grad_norm(ptrs, naive * 2), naive, 1e-6 * naive);  // no clipping: unchanged
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(test::tensors_equal(vars[i].grad(), grads[i]));
  const double max_norm = naive / 3;
  EXPECT_NEAR(clip_grad_norm(ptrs, max_norm), naive, 1e-6 * naive);
  const double coef = max_norm / (naive + 1e-6);
  for (int i = 0; i < 3; ++i) PT_EXPECT_CLOSE(vars[i].grad(), mul_scalar(grads[i], coef), test::kElementwiseF32);
  EXPECT_NEAR(clip_grad_norm(ptrs, 1e9), max_norm, 1e-5 * max_norm);
  test::expect_error([&] { clip_grad_norm(ptrs, 0.0); }, "max_norm");
}

TEST(ClipGradNorm, AccumulateAndScaleGradsGiveTheMean) {
  Variable w(test::random_tensor({6}, 1), true);
  Tensor g1 = test::random_tensor({6}, 2), g2 = test::random_tensor({6}, 3);
  accumulate_grad(w, g1);
  accumulate_grad(w, g2);
  scale_grads({&w}, 0.5);
  PT_EXPECT_CLOSE(w.grad(), mul_scalar(add(g1, g2), 0.5), test::kElementwiseF32);
  test::expect_error([&] { accumulate_grad(w, test::random_tensor({5}, 4)); }, "does not match");
}

TEST(LrSchedule, HandComputedValues) {
  LrSchedule c{LrScheduleKind::constant, 0.1, 4, 0, 0.0};
  EXPECT_DOUBLE_EQ(c.lr_at(0), 0.0);
  EXPECT_DOUBLE_EQ(c.lr_at(1), 0.025);
  EXPECT_DOUBLE_EQ(c.lr_at(4), 0.1);
  EXPECT_DOUBLE_EQ(c.lr_at(100000), 0.1);
  LrSchedule lin{LrScheduleKind::linear, 1.0, 2, 10, 0.0};
  const double lin_expect[] = {0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0, 0.0};
  for (int s = 0; s < 12; ++s) EXPECT_DOUBLE_EQ(lin.lr_at(s), lin_expect[s]) << "step " << s;
  lin.min_lr_ratio = 0.1;
  EXPECT_DOUBLE_EQ(lin.lr_at(6), 0.55);
  EXPECT_DOUBLE_EQ(lin.lr_at(1), 0.5);  // warm-up ignores the floor
  EXPECT_DOUBLE_EQ(lin.lr_at(50), 0.1);
  LrSchedule cos{LrScheduleKind::cosine, 2.0, 0, 4, 0.0};
  EXPECT_DOUBLE_EQ(cos.lr_at(0), 2.0);
  EXPECT_NEAR(cos.lr_at(1), 1.0 + std::sqrt(0.5), 1e-15);
  EXPECT_NEAR(cos.lr_at(2), 1.0, 1e-15);
  EXPECT_NEAR(cos.lr_at(3), 1.0 - std::sqrt(0.5), 1e-15);
  EXPECT_NEAR(cos.lr_at(4), 0.0, 1e-15);
  EXPECT_NEAR(cos.lr_at(9), 0.0, 1e-15);  // clamped after total_steps
  cos.warmup_steps = 2;
  cos.min_lr_ratio = 0.5;
  EXPECT_DOUBLE_EQ(cos.lr_at(1), 1.0);
  EXPECT_NEAR(cos.lr_at(3), 2.0 * (0.5 + 0.5 * 0.5), 1e-15);
}

TEST(LrSchedule, RejectsNonsense) {
  test::expect_error([] { LrSchedule{LrScheduleKind::linear, 1e-3, 10, 5, 0.0}.lr_at(0); }, "less than warmup");
  test::expect_error([] { LrSchedule{LrScheduleKind::cosine, -1e-3, 0, 5, 0.0}.lr_at(0); }, "base_lr");
  test::expect_error([] { LrSchedule{LrScheduleKind::constant, 1e-3, -1, 0, 0.0}.lr_at(0); }, "warmup_steps");
  test::expect_error([] { LrSchedule{LrScheduleKind::linear, 1e-3, 0, 5, 1.5}.lr_at(0); }, "min_lr_ratio");
  test::expect_error([] { LrSchedule{LrScheduleKind::linear, 1e-3, 0, 5, 0.0}.lr_at(-1); }, "negative");
  test::expect_error([] { parse_lr_schedule_kind("step"); }, "unknown kind");
  EXPECT_EQ(parse_lr_schedule_kind("cosine"), LrScheduleKind::cosine);
}

// ---- (3) CUDA: fused == unfused == reference -------------------------------------------------------------

TEST(CudaAdamW, FusedEqualsUnfusedEqualsReference) {
  PT_SKIP_IF_NO_CUDA();
  for (bool offset_views : {false, true}) {  // aligned (vector path) and misaligned (scalar path) params
    SCOPED_TRACE(offset_views ? "misaligned views" : "aligned");
    Model cpu = make_model(31, offset_views), cu = copy_to(cpu, Device::cuda);
    Model cf = offset_views ? offset_copy_cuda(cpu) : copy_to(cpu, Device::cuda);
    AdamW ref = make_optimizer(cpu, "reference"), unf = make_optimizer(cu, "unfused"),
          fus = make_optimizer(cf, "fused");
    for (int s = 0; s < 100; ++s) {
      set_grads(cpu, s);
      set_grads(cu, s);
      set_grads(cf, s);
      ref.step(1e-2);
      unf.step(1e-2);
      fus.step(1e-2);
      if (s == 0 || s == 99) {
        expect_close(fus, ref, "fused vs reference, step " + std::to_string(s + 1));
        expect_close(unf, ref, "unfused vs reference, step " + std::to_string(s + 1));
        expect_close(fus, unf, "fused vs unfused, step " + std::to_string(s + 1));
      }
    }
    expect_pruned_exact_zero(fus, "fused");
    expect_pruned_exact_zero(unf, "unfused (cuda)");
  }
}

TEST(CudaAdamW, UnmaskedFusedMatchesReferenceAndRejectsReferenceOnCuda) {
  PT_SKIP_IF_NO_CUDA();
  Model cpu = make_model(41), cf = copy_to(cpu, Device::cuda);
  AdamW ref = make_optimizer(cpu, "reference", false), fus = make_optimizer(cf, "fused", false);
  for (int s = 0; s < 10; ++s) {
    set_grads(cpu, s);
    set_grads(cf, s);
    ref.step(2e-3);
    fus.step(2e-3);
  }
  expect_close(fus, ref, "step 10");
  test::expect_error([&] { fus.step(1e-3, "reference"); }, "variant 'reference' runs on cpu, not on cuda");
}

}  // namespace
}  // namespace pt::nn
