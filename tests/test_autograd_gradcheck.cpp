// Every differentiable function against central finite differences (f64, CPU), a composite MLP, a check
// that the checker itself catches a wrong backward, and CPU-vs-CUDA gradients of the composite.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "tests/test_util.h"

namespace pt::autograd {
namespace {

using Vars = std::vector<Variable>;

Tensor rand64(const Shape& s, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  return test::random_tensor(s, seed, lo, hi, DType::f64);
}
// Values with |x| in [0.2, 1]: finite differences never straddle relu's kink at 0.
Tensor away_from_zero(const Shape& s, uint64_t seed) {
  std::vector<double> v = rand64(s, seed).to_vector<double>();
  for (double& x : v) x = x < 0 ? x * 0.8 - 0.2 : x * 0.8 + 0.2;
  return Tensor::from_vector<double>(v, s);
}
Tensor ids(const std::vector<int64_t>& v, const Shape& s) { return Tensor::from_vector<int64_t>(v, s); }
Tensor mask_u8(const std::vector<uint8_t>& v, const Shape& s) { return Tensor::from_vector<uint8_t>(v, s); }

// Checks fn, and sum_all(fn): the second feeds each backward a stride-0 (expanded) gradient, the
// shape of gradient a loss reduction produces, so every backward must cope with broadcast views.
#define EXPECT_GRADCHECK(fn, ...)                                                              \
  do {                                                                                         \
    const GradcheckFn f_ = (fn);                                                               \
    const std::vector<Tensor> in_{__VA_ARGS__};                                                \
    GradcheckResult r_ = gradcheck(f_, in_);                                                   \
    EXPECT_TRUE(r_.ok) << r_.message;                                                          \
    r_ = gradcheck([&f_](const Vars& v) { return sum_all(f_(v)); }, in_);                      \
    EXPECT_TRUE(r_.ok) << "under sum_all: " << r_.message;                                     \
  } while (0)

// ---- element-wise ---------------------------------------------------------------------------------

TEST(AutogradGradcheck, BinaryOpsWithBroadcasting) {
  // [3,1,5] op [4,1] -> [3,4,5]: both gradients must be summed back to the input shapes.
  Tensor a = rand64({3, 1, 5}, 1), b = rand64({4, 1}, 2), pos = rand64({4, 1}, 3, 0.5, 2.0);
  EXPECT_GRADCHECK([](const Vars& v) { return add(v[0], v[1]); }, a, b);
  EXPECT_GRADCHECK([](const Vars& v) { return sub(v[0], v[1]); }, a, b);
  EXPECT_GRADCHECK([](const Vars& v) { return mul(v[0], v[1]); }, a, b);
  EXPECT_GRADCHECK([](const Vars& v) { return div(v[0], v[1]); }, a, pos);
  EXPECT_GRADCHECK([](const Vars& v) { return sub(v[0], v[1]); }, rand64({2, 3}, 4), rand64({3}, 5));
  EXPECT_GRADCHECK([](const Vars& v) { return mul(v[0], v[1]); }, rand64({2, 3}, 6), rand64({}, 7));
}

TEST(AutogradGradcheck, ScalarOps) {
  Tensor x = rand64({3, 4}, 10), pos = rand64({3, 4}, 11, 0.5, 2.0);
  EXPECT_GRADCHECK([](const Vars& v) { return add_scalar(v[0], 1.5); }, x);
  EXPECT_GRADCHECK([](const Vars& v) { return mul_scalar(v[0], -2.5); }, x);
  EXPECT_GRADCHECK([](const Vars& v) { return pow_scalar(v[0], 2.5); }, pos);
  EXPECT_GRADCHECK([](const Vars& v) { return pow_scalar(v[0], -1.5); }, pos);
  EXPECT_GRADCHECK([](const Vars& v) { return pow_scalar(v[0], 3.0); }, x);
}

TEST(AutogradGradcheck, UnaryOps) {
  Tensor x = rand64({2, 5}, 20), pos = rand64({2, 5}, 21, 0.5, 2.0);
  EXPECT_GRADCHECK([](const Vars& v) { return neg(v[0]); }, x);
  EXPECT_GRADCHECK([](const Vars& v) { return relu(v[0]); }, away_from_zero({2, 5}, 22));
  EXPECT_GRADCHECK([](const Vars& v) { return exp(v[0]); }, x);
  EXPECT_GRADCHECK([](const Vars& v) { return log(v[0]); }, pos);
  EXPECT_GRADCHECK([](const Vars& v) { return sqrt(v[0]); }, pos);
  EXPECT_GRADCHECK([](const Vars& v) { return square(v[0]); }, x);
}

// ---- reductions -----------------------------------------------------------------------------------

TEST(AutogradGradcheck, Reductions) {
  Tensor x = rand64({3, 4, 5}, 30);
  for (int64_t dim : {0, 1, -1})
    for (bool keep : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "dim " << dim << " keepdim " << keep);
      EXPECT_GRADCHECK([=](const Vars& v) { return sum(v[0], dim, keep); }, x);
      EXPECT_GRADCHECK([=](const Vars& v) { return mean(v[0], dim, keep); }, x);
    }
  EXPECT_GRADCHECK([](const Vars& v) { return sum_all(v[0]); }, x);
  EXPECT_GRADCHECK([](const Vars& v) { return mean_all(v[0]); }, x);
}

// ---- matrix products ------------------------------------------------------------------------------

TEST(AutogradGradcheck, Matmul2DAllTransposes) {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "trans_a " << ta << " trans_b " << tb);
      Tensor a = rand64(ta ? Shape{4, 3} : Shape{3, 4}, 40), b = rand64(tb ? Shape{5, 4} : Shape{4, 5}, 41);
      EXPECT_GRADCHECK([=](const Vars& v) { return matmul(v[0], v[1], ta, tb); }, a, b);
    }
}

TEST(AutogradGradcheck, MatmulBatchedAndSharedB) {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "trans_a " << ta << " trans_b " << tb);
      Tensor a = rand64(ta ? Shape{2, 3, 4, 3} : Shape{2, 3, 3, 4}, 42);
      Tensor b = rand64(tb ? Shape{2, 3, 5, 4} : Shape{2, 3, 4, 5}, 43);
      Tensor shared = rand64(tb ? Shape{5, 4} : Shape{4, 5}, 44);
      EXPECT_GRADCHECK([=](const Vars& v) { return matmul(v[0], v[1], ta, tb); }, a, b);
      EXPECT_GRADCHECK([=](const Vars& v) { return matmul(v[0], v[1], ta, tb); }, a, shared);
    }
  // Strided operands (attention's transposed heads) take the same path.
  EXPECT_GRADCHECK([](const Vars& v) { return matmul(transpose(v[0], 1, 2), v[1]); }, rand64({2, 4, 3}, 45),
                   rand64({2, 4, 5}, 46));
}

TEST(AutogradGradcheck, Linear) {
  Tensor w = rand64({3, 4}, 51), b = rand64({3}, 52);
  EXPECT_GRADCHECK([](const Vars& v) { return linear(v[0], v[1], v[2]); }, rand64({5, 4}, 50), w, b);
  EXPECT_GRADCHECK([](const Vars& v) { return linear(v[0], v[1], v[2]); }, rand64({2, 3, 4}, 53), w, b);
  EXPECT_GRADCHECK([](const Vars& v) { return linear(v[0], v[1], Variable()); }, rand64({5, 4}, 54), w);
}

// ---- shape ----------------------------------------------------------------------------------------

TEST(AutogradGradcheck, ShapeOps) {
  Tensor x = rand64({2, 3, 4}, 60);
  EXPECT_GRADCHECK([](const Vars& v) { return reshape(v[0], {6, 4}); }, x);
  EXPECT_GRADCHECK([](const Vars& v) { return reshape(transpose(v[0], 0, 2), {-1}); }, x);  // copying path
  EXPECT_GRADCHECK([](const Vars& v) { return view(v[0], {4, 6}); }, x);
  EXPECT_GRADCHECK([](const Vars& v) { return transpose(v[0], 0, -1); }, x);
  EXPECT_GRADCHECK([](const Vars& v) { return permute(v[0], {2, 0, 1}); }, x);
  EXPECT_GRADCHECK([](const Vars& v) { return narrow(v[0], 1, 1, 2); }, x);
  EXPECT_GRADCHECK([](const Vars& v) { return contiguous(permute(v[0], {1, 2, 0})); }, x);
  EXPECT_GRADCHECK([](const Vars& v) { return expand(v[0], {2, 3, 4}); }, rand64({3, 1}, 61));
  EXPECT_GRADCHECK([](const Vars& v) { return unsqueeze(v[0], -1); }, x);
  EXPECT_GRADCHECK([](const Vars& v) { return squeeze(v[0], 1); }, rand64({3, 1, 2}, 62));
  EXPECT_GRADCHECK([](const Vars& v) { return cat({v[0], v[1], v[2]}, 1); }, rand64({2, 1, 3}, 63),
                   rand64({2, 4, 3}, 64), rand64({2, 2, 3}, 65));
}

// ---- softmax, normalisation, lookup, loss ----------------------------------------------------------

TEST(AutogradGradcheck, Softmax) {
  EXPECT_GRADCHECK([](const Vars& v) { return softmax(v[0]); }, rand64({3, 5}, 70));
  EXPECT_GRADCHECK([](const Vars& v) { return softmax(v[0], /*causal=*/true); }, rand64({2, 4, 4}, 71));
  EXPECT_GRADCHECK([](const Vars& v) { return softmax(v[0], /*causal=*/true); }, rand64({2, 3, 5}, 72));  // Tq < Tk
  EXPECT_GRADCHECK([](const Vars& v) { return log_softmax(v[0]); }, rand64({3, 5}, 73));
}

TEST(AutogradGradcheck, LayerNorm) {
  Tensor w = rand64({6}, 81), b = rand64({6}, 82);
  EXPECT_GRADCHECK([](const Vars& v) { return layer_norm(v[0], v[1], v[2], 1e-5); }, rand64({4, 6}, 80), w, b);
  EXPECT_GRADCHECK([](const Vars& v) { return layer_norm(v[0], v[1], v[2], 1e-5); }, rand64({2, 3, 6}, 83), w, b);
}

TEST(AutogradGradcheck, EmbeddingWithPaddingIdx) {
  Tensor table = rand64({5, 3}, 90);
  Tensor tokens = ids({1, 2, 2, 0, 4, 1}, {2, 3});  // row 2 repeats (its gradient is a sum), row 3 unused
  EXPECT_GRADCHECK([=](const Vars& v) { return embedding(v[0], tokens); }, table);

  // With padding_idx the forward still reads the row, but it must get exactly zero gradient.
  Variable w(table, true);
  embedding(w, tokens, /*padding_idx=*/2).backward(rand64({2, 3, 3}, 91));
  std::vector<double> g = w.grad().to_vector<double>();
  for (int64_t c = 0; c < 3; ++c) EXPECT_EQ(g[size_t(2 * 3 + c)], 0.0) << "padding row, column " << c;
  for (int64_t c = 0; c < 3; ++c) EXPECT_EQ(g[size_t(3 * 3 + c)], 0.0) << "unused row, column " << c;
  EXPECT_NE(g[size_t(1 * 3)], 0.0);
}

TEST(AutogradGradcheck, CrossEntropyWithIgnoredTargets) {
  Tensor logits = rand64({5, 4}, 100, -2.0, 2.0);
  Tensor targets = ids({3, -100, 0, 1, -100}, {5});
  for (Reduction red : {Reduction::mean, Reduction::sum})
    EXPECT_GRADCHECK([=](const Vars& v) { return cross_entropy(v[0], targets, -100, red); }, logits);
  // Ignored rows get zero gradient.
  Variable l(logits, true);
  cross_entropy(l, targets).backward();
  std::vector<double> g = l.grad().to_vector<double>();
  for (int64_t c = 0; c < 4; ++c) EXPECT_EQ(g[size_t(1 * 4 + c)], 0.0);
}

// ---- masks and selection --------------------------------------------------------------------------

TEST(AutogradGradcheck, Dropout) {
  // A fresh generator with the same seed in every call reproduces the mask, as finite differences need.
  EXPECT_GRADCHECK([](const Vars& v) { Generator gen(7); return dropout(v[0], 0.3, gen, true); },
                   rand64({4, 5}, 110));
  Variable x(rand64({4, 5}, 111), true);
  Generator gen(7);
  EXPECT_TRUE(dropout(x, 0.3, gen, /*training=*/false).same(x));
  EXPECT_EQ(gen.offset, 0u) << "evaluation mode draws nothing";
}

TEST(AutogradGradcheck, MasksAndWhere) {
  Tensor keep = mask_u8({1, 0, 1, 1, 0, 1, 0, 1}, {2, 4});
  EXPECT_GRADCHECK([=](const Vars& v) { return apply_mask(v[0], keep); }, rand64({2, 4}, 120));
  EXPECT_GRADCHECK([=](const Vars& v) { return masked_fill(v[0], keep, -3.0); }, rand64({2, 4}, 121));
  // The mask [2, 4] broadcasts x [4]: x's gradient sums over the broadcast rows.
  EXPECT_GRADCHECK([=](const Vars& v) { return masked_fill(v[0], keep, -3.0); }, rand64({4}, 122));
  Tensor cond = mask_u8({1, 0, 0, 1}, {4, 1});
  EXPECT_GRADCHECK([=](const Vars& v) { return where(cond, v[0], v[1]); }, rand64({4, 3}, 123), rand64({3}, 124));

  // Pruned weights get exactly zero gradient.
  Variable w(rand64({2, 4}, 125), true);
  sum_all(apply_mask(w, keep)).backward();
  PT_EXPECT_CLOSE(w.grad(), keep.to(DType::f64), test::kF64);
}

// ---- composite and the checker itself ------------------------------------------------------------

// 2-layer MLP: linear -> layer_norm -> relu -> linear -> cross_entropy (one target ignored).
Variable mlp_loss(const Vars& v, const Tensor& targets) {
  Variable h = relu(layer_norm(linear(v[0], v[1], v[2]), v[3], v[4], 1e-5));
  return cross_entropy(linear(h, v[5], v[6]), targets, -100);
}
std::vector<Tensor> mlp_inputs() {
  return {rand64({5, 4}, 130), rand64({6, 4}, 131), rand64({6}, 132), rand64({6}, 133, 0.5, 1.5),
          rand64({6}, 134),    rand64({3, 6}, 135), rand64({3}, 136)};
}
Tensor mlp_targets() { return ids({2, 0, -100, 1, 2}, {5}); }
// Gradients of the MLP loss w.r.t. every input, computed in `dtype` on `device`, returned on the CPU.
std::vector<Tensor> mlp_grads(Device device, DType dtype) {
  Vars v;
  for (const Tensor& t : mlp_inputs()) v.emplace_back(t.to(dtype).to(device), true);
  mlp_loss(v, mlp_targets().to(device)).backward();
  std::vector<Tensor> g;
  for (const Variable& x : v) g.push_back(x.grad().to(Device::cpu).to(DType::f64));
  return g;
}

TEST(AutogradGradcheck, TwoLayerMlpWithCrossEntropy) {
  Tensor targets = mlp_targets();
  GradcheckResult r = gradcheck([=](const Vars& v) { return mlp_loss(v, targets); }, mlp_inputs());
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(AutogradGradcheck, F32MlpGradientsMatchF64) {
  std::vector<Tensor> f32 = mlp_grads(Device::cpu, DType::f32), f64 = mlp_grads(Device::cpu, DType::f64);
  for (size_t i = 0; i < f32.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "input " << i);
    EXPECT_TRUE(test::tensors_close(f32[i], f64[i], test::kReductionF32));
  }
}

TEST(AutogradGradcheck, CheckerCatchesAWrongBackward) {
  // exp whose backward forgets the factor exp(x): the check must fail and name the input and element.
  auto wrong_exp = [](const Vars& v) {
    return Variable::from_op(pt::exp(v[0].data()), {v[0]}, [](const Tensor& g) { return std::vector<Tensor>{g}; },
                             "wrong_exp");
  };
  GradcheckResult r = gradcheck(wrong_exp, {rand64({3}, 140)});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("input 0"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("analytic"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("numeric"), std::string::npos) << r.message;

  // Wrong only for the second input: the message names input 1.
  auto wrong_mul = [](const Vars& v) {
    Tensor a = v[0].data(), b = v[1].data();
    return Variable::from_op(pt::mul(a, b), {v[0], v[1]}, [a, b](const Tensor& g) {
      return std::vector<Tensor>{pt::mul(g, b), pt::mul(g, b)};  // should be g*a
    }, "wrong_mul");
  };
  r = gradcheck(wrong_mul, {rand64({4}, 141), rand64({4}, 142)});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("input 1"), std::string::npos) << r.message;
}

TEST(AutogradGradcheck, LeavesTheCallersInputsUntouched) {
  Tensor x = rand64({3}, 150), copy = x.clone();
  EXPECT_GRADCHECK([](const Vars& v) { return square(v[0]); }, x);
  EXPECT_TRUE(test::tensors_equal(x, copy));
}

// ---- CPU vs CUDA ---------------------------------------------------------------------------------

TEST(CudaAutograd, MlpGradientsMatchTheCpu) {
  PT_SKIP_IF_NO_CUDA();
  std::vector<Tensor> cpu = mlp_grads(Device::cpu, DType::f32), cuda = mlp_grads(Device::cuda, DType::f32);
  for (size_t i = 0; i < cpu.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "input " << i);
    EXPECT_TRUE(test::tensors_close(cuda[i], cpu[i], test::Tolerance{1e-4, 1e-6}));
  }
}

}  // namespace
}  // namespace pt::autograd
