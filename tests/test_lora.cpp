// LoRA adapters on nn::Linear (MaskLoRA, ScaleLoRA): identity at init, the effective weight against a naive
// loop, gradients against finite differences, registration under the Linear, and merges that keep pruned
// weights at exactly +0.0.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "nn/linear.h"
#include "nn/lora.h"
#include "test_util.h"

namespace pt::test {
namespace {

// A Linear with random weights and bias and a random keep-mask of about `keep_fraction`.
std::unique_ptr<nn::Linear> pruned_linear(int64_t in, int64_t out, uint64_t seed, DType dtype = DType::f32,
                                          double keep_fraction = 0.5) {
  auto lin = std::make_unique<nn::Linear>(in, out, true, Device::cpu, dtype);
  lin->weight.data().copy_(random_tensor({out, in}, seed, -0.5, 0.5, dtype));
  lin->bias.data().copy_(random_tensor({out}, seed + 1, -0.5, 0.5, dtype));
  lin->set_mask(compare_scalar(random_tensor({out, in}, seed + 2, 0.0, 1.0), keep_fraction, CompareOp::lt));
  return lin;
}

// Every pruned weight is +0.0 (not -0.0, not anything else); returns how many there are.
int64_t expect_pruned_positive_zero(const nn::Linear& lin) {
  const Tensor w = lin.weight.data().to(DType::f64), keep = lin.weight_mask;
  int64_t pruned = 0;
  for (int64_t i = 0; i < w.numel(); ++i)
    if (keep.data<uint8_t>()[i] == 0) {
      ++pruned;
      const double v = w.data<double>()[i];
      EXPECT_TRUE(v == 0.0 && !std::signbit(v)) << "pruned weight " << i << " is " << v;
    }
  return pruned;
}

// Naive W_eff in f64 from the adapter's tensors, one entry at a time.
Tensor naive_effective_weight(const Tensor& w32, const Tensor& keep, const Tensor& a32, const Tensor& b32,
                              bool mask_lora, double scaling) {
  const Tensor w = w32.to(DType::f64), a = a32.to(DType::f64), b = b32.to(DType::f64);
  const int64_t out = w.size(0), in = w.size(1), r = a.size(0);
  Tensor e = Tensor::zeros({out, in}, DType::f64);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) {
      double ba = 0;
      for (int64_t k = 0; k < r; ++k) ba += b.data<double>()[o * r + k] * a.data<double>()[k * in + i];
      const double wv = w.data<double>()[o * in + i];
      const bool kept = keep.data<uint8_t>()[o * in + i] != 0;
      e.data<double>()[o * in + i] = mask_lora ? wv + (kept ? scaling * ba : 0.0) : wv * ba;
    }
  return e;
}

TEST(Lora, MaskLoraIsExactlyTheLinearAtInit) {
  auto lin = pruned_linear(48, 40, 11);
  const Tensor x = random_tensor({3, 5, 48}, 12);
  const Tensor plain = lin->forward(autograd::Variable(x)).data();
  Generator gen(3);
  auto adapter = std::make_shared<nn::MaskLoraAdapter>(*lin, 8, 16.0, gen);
  EXPECT_DOUBLE_EQ(adapter->scaling(), 2.0);
  // A is PEFT's kaiming-uniform: inside ±1/√in and not degenerate; B starts at zero.
  const double bound = 1.0 / std::sqrt(48.0);
  const Tensor a = adapter->lora_A.data();
  EXPECT_LE(pt::max(pt::abs(a).reshape({a.numel()}), 0).item(), bound);
  EXPECT_GT(pt::max(pt::abs(a).reshape({a.numel()}), 0).item(), bound / 2);
  EXPECT_EQ(pt::sum_all(pt::abs(adapter->lora_B.data())).item(), 0.0);
  lin->attach_adapter(adapter);
  EXPECT_TRUE(tensors_equal(lin->forward(autograd::Variable(x)).data(), plain));
  autograd::Variable xg(x, true);  // with a graph recorded too
  EXPECT_TRUE(tensors_equal(lin->forward(xg).data(), plain));
}

TEST(Lora, ScaleLoraIsTheLinearAtInit) {
  auto lin = pruned_linear(48, 40, 21);
  const Tensor x = random_tensor({4, 48}, 22);
  const Tensor plain = lin->forward(autograd::Variable(x)).data();
  // A power-of-4 rank makes B·A exactly one: bit-identical.
  lin->attach_adapter(std::make_shared<nn::ScaleLoraAdapter>(*lin, 16));
  EXPECT_TRUE(tensors_equal(lin->forward(autograd::Variable(x)).data(), plain));
  lin->detach_adapter();
  // Any other rank: within fp32 rounding.
  auto odd = std::make_shared<nn::ScaleLoraAdapter>(*lin, 6);
  PT_EXPECT_CLOSE(odd->product().data(), Tensor::ones({40, 48}), kElementwiseF32);
  lin->attach_adapter(odd);
  PT_EXPECT_CLOSE(lin->forward(autograd::Variable(x)).data(), plain, kElementwiseF32);
}

TEST(Lora, EffectiveWeightMatchesANaiveLoop) {
  for (bool mask_lora : {true, false}) {
    SCOPED_TRACE(mask_lora ? "mask-lora" : "scale-lora");
    auto lin = pruned_linear(24, 20, 31);
    Generator gen(5);
    std::shared_ptr<nn::LowRankAdapter> ad;
    if (mask_lora) ad = std::make_shared<nn::MaskLoraAdapter>(*lin, 4, 12.0, gen);
    else ad = std::make_shared<nn::ScaleLoraAdapter>(*lin, 4);
    // Trained-looking values (neither the zero B nor the all-ones product of the init).
    ad->lora_A.data().copy_(random_tensor({4, 24}, 32));
    ad->lora_B.data().copy_(random_tensor({20, 4}, 33));
    const Tensor got = ad->effective_weight(lin->weight, lin->weight_mask).data();
    const Tensor want = naive_effective_weight(lin->weight.data(), lin->weight_mask, ad->lora_A.data(),
                                               ad->lora_B.data(), mask_lora, 3.0);
    PT_EXPECT_CLOSE(got.to(DType::f64), want, kElementwiseF32);
    // The effective weight is 0 wherever W is pruned, whatever A and B are.
    for (int64_t i = 0; i < got.numel(); ++i) {
      if (lin->weight_mask.data<uint8_t>()[i] != 0) continue;
      EXPECT_EQ(got.data<float>()[i], 0.0f) << i;
    }
    // No mask: mask-lora is plain LoRA.
    if (mask_lora) {
      const Tensor dense = ad->effective_weight(lin->weight, Tensor()).data();
      const Tensor ones = Tensor::ones(lin->weight.shape(), DType::u8);
      PT_EXPECT_CLOSE(dense.to(DType::f64),
                      naive_effective_weight(lin->weight.data(), ones, ad->lora_A.data(), ad->lora_B.data(), true, 3.0),
                      kElementwiseF32);
    }
  }
}

TEST(Lora, GradientsOfAAndBMatchFiniteDifferences) {
  for (bool mask_lora : {true, false}) {
    SCOPED_TRACE(mask_lora ? "mask-lora" : "scale-lora");
    auto lin = pruned_linear(7, 6, 41, DType::f64);
    Generator gen(6);
    std::shared_ptr<nn::LowRankAdapter> ad;
    if (mask_lora) ad = std::make_shared<nn::MaskLoraAdapter>(*lin, 3, 6.0, gen);
    else ad = std::make_shared<nn::ScaleLoraAdapter>(*lin, 3);
    lin->attach_adapter(ad);
    lin->weight.set_requires_grad(false);  // the retraining scopes freeze W
    const Tensor x = random_tensor({4, 7}, 42, -1, 1, DType::f64);
    const Tensor a = random_tensor({3, 7}, 43, -1, 1, DType::f64), b = random_tensor({6, 3}, 44, -1, 1, DType::f64);
    auto fn = [&](const std::vector<autograd::Variable>& in) {
      ad->lora_A = in[1];  // the probed variables become the adapter's parameters
      ad->lora_B = in[2];
      return lin->forward(in[0]);
    };
    const autograd::GradcheckResult r = autograd::gradcheck(fn, {x, a, b});
    EXPECT_TRUE(r.ok) << r.message;
  }
}

// dL/dB = s·((G ⊙ M)·Aᵀ) and dL/dA = s·(Bᵀ·(G ⊙ M)) with G = dL/dW_eff = gyᵀ·x: checked by loops.
TEST(Lora, MaskLoraGradientsMatchTheClosedForm) {
  auto lin = pruned_linear(10, 8, 51);
  lin->weight.set_requires_grad(false);
  Generator gen(7);
  auto ad = std::make_shared<nn::MaskLoraAdapter>(*lin, 2, 4.0, gen);  // s = 2
  ad->lora_B.data().copy_(random_tensor({8, 2}, 52));
  lin->attach_adapter(ad);
  const Tensor x = random_tensor({5, 10}, 53), gy = random_tensor({5, 8}, 54);
  lin->forward(autograd::Variable(x)).backward(gy);
  const Tensor A = ad->lora_A.data(), B = ad->lora_B.data(), M = lin->weight_mask;
  Tensor gm = Tensor::zeros({8, 10}, DType::f64);  // G ⊙ M
  for (int64_t o = 0; o < 8; ++o)
    for (int64_t i = 0; i < 10; ++i) {
      double g = 0;
      for (int64_t n = 0; n < 5; ++n) g += double(gy.data<float>()[n * 8 + o]) * x.data<float>()[n * 10 + i];
      gm.data<double>()[o * 10 + i] = M.data<uint8_t>()[o * 10 + i] ? g : 0.0;
    }
  Tensor dA = Tensor::zeros({2, 10}, DType::f64), dB = Tensor::zeros({8, 2}, DType::f64);
  for (int64_t k = 0; k < 2; ++k)
    for (int64_t o = 0; o < 8; ++o)
      for (int64_t i = 0; i < 10; ++i) {
        const double g = gm.data<double>()[o * 10 + i];
        dA.data<double>()[k * 10 + i] += 2.0 * B.data<float>()[o * 2 + k] * g;
        dB.data<double>()[o * 2 + k] += 2.0 * g * A.data<float>()[k * 10 + i];
      }
  PT_EXPECT_CLOSE(ad->lora_A.grad().to(DType::f64), dA, kReductionF32);
  PT_EXPECT_CLOSE(ad->lora_B.grad().to(DType::f64), dB, kReductionF32);
  EXPECT_FALSE(lin->weight.grad().defined());  // the frozen base weight got nothing
}

TEST(Lora, ParametersAreRegisteredUnderTheLinearWhileAttached) {
  auto lin = pruned_linear(12, 9, 61);
  auto names = [&] {
    std::vector<std::string> out;
    for (auto& [n, _] : lin->named_parameters()) out.push_back(n);
    return out;
  };
  EXPECT_EQ(names(), (std::vector<std::string>{"weight", "bias"}));
  auto ad = std::make_shared<nn::ScaleLoraAdapter>(*lin, 4);
  lin->attach_adapter(ad);
  EXPECT_EQ(names(), (std::vector<std::string>{"weight", "bias", "lora_A", "lora_B"}));
  EXPECT_EQ(lin->state_dict().at("lora_A").shape(), (Shape{4, 12}));
  EXPECT_EQ(lin->state_dict().at("lora_B").shape(), (Shape{9, 4}));
  EXPECT_EQ(lin->num_parameters(), 12 * 9 + 9 + 4 * (12 + 9));
  expect_error([&] { lin->attach_adapter(std::make_shared<nn::ScaleLoraAdapter>(*lin, 4)); }, "already has a scale-lora");
  lin->detach_adapter();
  EXPECT_EQ(names(), (std::vector<std::string>{"weight", "bias"}));
  EXPECT_FALSE(lin->has_adapter());
  // An adapter built for another shape is refused before it can break a training step.
  auto other = pruned_linear(12, 10, 62);
  expect_error([&] { lin->attach_adapter(std::make_shared<nn::ScaleLoraAdapter>(*other, 4)); },
               "a scale-lora adapter does not fit weight [9, 12]");
  EXPECT_EQ(names(), (std::vector<std::string>{"weight", "bias"}));
  expect_error([&] { lin->merge_adapter(); }, "has no adapter");
  expect_error([&] { nn::ScaleLoraAdapter bad(*lin, 0); }, "rank must be at least 1");
}

TEST(Lora, MergeKeepsTheForwardAndWritesPositiveZerosWherePruned) {
  for (bool mask_lora : {true, false}) {
    SCOPED_TRACE(mask_lora ? "mask-lora" : "scale-lora");
    auto lin = pruned_linear(32, 24, 71);
    const Tensor before = lin->weight.data().clone();
    Generator gen(8);
    std::shared_ptr<nn::LowRankAdapter> ad;
    if (mask_lora) ad = std::make_shared<nn::MaskLoraAdapter>(*lin, 4, 8.0, gen);
    else ad = std::make_shared<nn::ScaleLoraAdapter>(*lin, 4);
    // Signed values: scale-lora's product is negative in places, so 0 · (B·A) gives -0.0 before the merge's
    // re-masking.
    ad->lora_A.data().copy_(random_tensor({4, 32}, 72));
    ad->lora_B.data().copy_(random_tensor({24, 4}, 73));
    lin->attach_adapter(ad);
    const Tensor x = random_tensor({6, 32}, 74);
    const Tensor adapted = lin->forward(autograd::Variable(x)).data();
    lin->merge_adapter();
    EXPECT_FALSE(lin->has_adapter());
    EXPECT_EQ(lin->named_parameters().size(), 2u);
    PT_EXPECT_CLOSE(lin->forward(autograd::Variable(x)).data(), adapted, kElementwiseF32);
    EXPECT_GT(expect_pruned_positive_zero(*lin), 24 * 32 / 4);
    EXPECT_FALSE(tensors_equal(lin->weight.data(), before));  // the kept weights did change
  }
}

}  // namespace
}  // namespace pt::test
