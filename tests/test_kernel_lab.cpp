// The kernel lab: every registered variant of every kernel family against its family's reference, on every test
// shape class it takes (lab/parity.h: guards around every buffer, poisoned outputs), one parametrised case per
// (family, variant, device) built from the registry, so a new variant is checked without a new line here; CUDA
// cases skip without a GPU and prove parity on a GPU machine. Also: the registry holds exactly the expected
// variants, the run-time selection and its errors, and the checker itself catching a variant that writes past its
// output, leaves an element unwritten or writes to an input.
#include <algorithm>
#include <map>

#include "lab/parity.h"
#include "prune/mask.h"
#include "prune/obs_sweep.h"
#include "tests/test_util.h"

namespace pt::lab {
namespace {

using test::expect_error;

struct ParityCase {
  const LabFamily* lab;
  std::string variant;
  Device device;
};

std::vector<ParityCase> parity_cases() {
  std::vector<ParityCase> out;
  for (const LabFamily* lab : lab_families())
    for (const kernels::VariantInfo* v : lab->family().variants())
      for (Device d : v->devices) out.push_back({lab, v->name, d});
  return out;
}

void PrintTo(const ParityCase& c, std::ostream* os) {
  *os << c.lab->family().name() << " / " << c.variant << " on " << device_name(c.device);
}

class Parity : public ::testing::TestWithParam<ParityCase> {};

TEST_P(Parity, MatchesTheReferenceOnEveryShapeClass) {
  const ParityCase& c = GetParam();
  if (c.device == Device::cuda) PT_SKIP_IF_NO_CUDA();
  const kernels::VariantInfo& v = *c.lab->family().find(c.variant);
  int checked = 0;
  uint64_t seed = 1000;
  for (const kernels::Problem& p : c.lab->problems(Purpose::test, c.device)) {
    if (!v.takes(p)) continue;
    SCOPED_TRACE(c.lab->family().name() + " / " + c.variant + " on " + device_name(c.device) + ": " + p.label());
    const ParityResult r = check_parity(*c.lab, c.variant, c.device, p, seed += 10);
    EXPECT_TRUE(r.ok()) << r.describe();
    ++checked;
  }
  EXPECT_GT(checked, 0) << "no test shape class of " << c.lab->family().name() << " is taken by " << c.variant;
}

INSTANTIATE_TEST_SUITE_P(KernelLab, Parity, ::testing::ValuesIn(parity_cases()), [](const auto& info) {
  return info.param.lab->family().name() + "_" + info.param.variant + "_" + device_name(info.param.device);
});

// The catalogue of variants this build must hold: a registration that the linker dropped or a line that went
// missing shows here, not as a silently absent parity case.
TEST(KernelLab, EveryExpectedVariantIsRegistered) {
  std::map<std::string, std::vector<std::string>> expected = {
      {"hessian", {"reference", "unfused", "fused", "bf16"}},
      {"inverse_factor", {"reference", "chol_inv_chol"}},
      {"obs_sweep", {"reference", "unfused"}},
      {"mask", {"reference", "unfused"}},
      {"adamw", {"reference", "unfused", "fused"}},
      {"sparse_linear", {"masked", "dense", "csr", "bitmap", "2of4"}},
      {"softmax", {"fused", "unfused"}},
      {"layer_norm", {"fused", "unfused"}},
      {"attention", {"unfused", "blocked"}}};
#if PT_CUDA
  for (const char* v : {"fused", "two_rows"}) expected["obs_sweep"].push_back(v);
  expected["mask"].push_back("fused");
#endif
  std::map<std::string, std::vector<std::string>> registered;
  for (const kernels::FamilyBase* f : kernel_families()) registered[f->name()] = f->names();
  EXPECT_EQ(registered, expected);
  for (const kernels::FamilyBase* f : kernel_families()) {
    SCOPED_TRACE(f->name());
    const kernels::VariantInfo* ref = f->find(f->reference());
    ASSERT_NE(ref, nullptr);
    EXPECT_TRUE(ref->runs_on(Device::cpu));  // the oracle runs in CI
    for (Device d : {Device::cpu}) {  // both shorthands name a variant on the CPU
      EXPECT_TRUE(f->find(f->shorthand_variant("fused", d)));
      EXPECT_TRUE(f->find(f->shorthand_variant("unfused", d)));
    }
  }
}

// Every variant has benchmark problems on each of its devices, and a cost model that gives bytes for them.
TEST(KernelLab, EveryVariantHasBenchmarkProblemsAndACost) {
  for (const LabFamily* lab : lab_families())
    for (const kernels::VariantInfo* v : lab->family().variants())
      for (Device d : v->devices) {
        SCOPED_TRACE(lab->family().name() + " / " + v->name + " on " + device_name(d));
        int taken = 0;
        for (const kernels::Problem& p : lab->problems(Purpose::bench, d)) {
          if (!v->takes(p)) continue;
          const kernels::Cost c = lab->family().cost(v->name, p);
          EXPECT_GT(c.bytes, 0.0) << p.label();
          EXPECT_GE(c.flops, 0.0) << p.label();
          ++taken;
        }
        EXPECT_GT(taken, 0);
      }
}

TEST(KernelSelection, TheShorthandTheSelectionAndTheirErrors) {
  kernels::FamilyBase& sweep = prune::obs_sweep_family();
  EXPECT_EQ(sweep.resolve(Device::cpu), "reference");  // fused first, but it runs on CUDA only
  {
    kernels::ScopedSelection scope;
    scope.shorthand("unfused");
    EXPECT_EQ(sweep.resolve(Device::cpu), "unfused");
    scope.add(sweep, "reference");
    EXPECT_EQ(sweep.resolve(Device::cpu), "reference");  // an explicit choice wins over the shorthand
    EXPECT_EQ(prune::mask_family().resolve(Device::cpu), "unfused");
  }
  EXPECT_EQ(sweep.selected(), "");  // restored
  EXPECT_EQ(kernels::shorthand(), "fused");
  expect_error([&] { sweep.select("fastest"); }, "kernel family obs_sweep has no variant 'fastest' (registered: reference, unfused");
  expect_error([] { kernels::set_shorthand("turbo"); }, "allowed: fused, unfused");
  EXPECT_EQ(sweep.why_not("unfused", Device::cpu), "");
#if PT_CUDA
  EXPECT_EQ(sweep.why_not("two_rows", Device::cpu),
            "kernel family obs_sweep: variant 'two_rows' runs on cuda, not on cpu (on cpu: reference, unfused)");
#endif
  // A call site that names a variant gets it; one that names none gets the selection.
  const Tensor w = test::random_tensor({3, 8}, 5), u = Tensor::eye(8);
  const Tensor keep = Tensor::ones({3, 8}, DType::u8), err = Tensor::empty({3, 8}), loss = Tensor::zeros({3});
  expect_error([&] { prune::obs_sweep_block(w, u, keep, err, loss, prune::SparsityPattern::unstructured(0.5), {}, "x"); },
               "has no variant 'x'");
}

// ---- the checker catches what it is there to catch ----------------------------------------------------------------

using Double = void(const Tensor& x, const Tensor& y);  // y = 2x, x and y f32 [n]

kernels::Family<Double>& double_family() {
  static kernels::Family<Double> family({.name = "double", .summary = "y = 2x", .reference = "good",
                                         .fused_order = {"good"}, .unfused_order = {"good"},
                                         .cost = [](const kernels::Problem& p) { return kernels::Cost{8.0, 1.0}; }});
  static const bool registered = [] {
    const auto add = [](const char* name, std::function<Double> run) {
      family.add({{.name = name, .devices = {Device::cpu}, .dtypes = {DType::f32}}, std::move(run)});
    };
    const auto twice = [](const Tensor& x, const Tensor& y) {
      for (int64_t i = 0; i < x.numel(); ++i) y.data<float>()[i] = 2 * x.data<float>()[i];
    };
    add("good", twice);
    add("writes_past_the_end", [twice](const Tensor& x, const Tensor& y) { twice(x, y); y.data<float>()[x.numel()] = 0; });
    add("skips_the_last", [](const Tensor& x, const Tensor& y) {
      for (int64_t i = 0; i + 1 < x.numel(); ++i) y.data<float>()[i] = 2 * x.data<float>()[i];
    });
    add("writes_its_input", [twice](const Tensor& x, const Tensor& y) { twice(x, y); x.data<float>()[0] = 1; });
    add("is_off", [twice](const Tensor& x, const Tensor& y) { twice(x, y); y.data<float>()[3] += 1e-2f; });
    return true;
  }();
  (void)registered;
  return family;
}

class DoubleLab final : public LabFamily {
 public:
  kernels::FamilyBase& family() const override { return double_family(); }
  std::vector<kernels::Problem> problems(Purpose, Device) const override { return {problem("odd", {{"n", 37}})}; }
  Args make_args(const kernels::Problem& p, uint64_t seed, Device device) const override {
    return {{"x", Role::input, random_uniform({p.dim("n")}, seed, device)},
            {"y", Role::output, Tensor::empty({p.dim("n")}, DType::f32, device)}};
  }
  Args run(const std::string& variant, const kernels::Problem&, const Args& a) const override {
    double_family().get(variant, Device::cpu)(a[0].t, a[1].t);
    return {};
  }
};

TEST(KernelLab, TheCheckerCatchesBadVariants) {
  const DoubleLab lab;
  const kernels::Problem p = lab.problems(Purpose::test, Device::cpu)[0];
  EXPECT_TRUE(check_parity(lab, "good", Device::cpu, p, 1).ok());
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"writes_past_the_end", "y: a guard byte around it was overwritten"},
      {"skips_the_last", "y: 1 of 37 elements are NaN where the reference is not (first at flat index 36)"},
      {"writes_its_input", "x (input): 1 of 37 elements differ"},
      {"is_off", "y: max |got - reference| / max |reference| = "}};
  for (const auto& [variant, needle] : bad) {
    const ParityResult r = check_parity(lab, variant, Device::cpu, p, 1);
    EXPECT_FALSE(r.ok()) << variant;
    EXPECT_NE(r.describe().find(needle), std::string::npos) << variant << ": " << r.describe();
  }
}

}  // namespace
}  // namespace pt::lab
