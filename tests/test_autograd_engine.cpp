// The backward engine's semantics: accumulation, diamonds, leaf-gradient accumulation across calls,
// no-grad mode, retain_graph, graph freeing, deep graphs, and its error messages.
#include <gtest/gtest.h>

#include <thread>

#include "autograd/functions.h"
#include "autograd/variable.h"
#include "tests/test_util.h"

namespace pt::autograd {
namespace {

using test::kF64;
using test::random_tensor;

Tensor rand64(const Shape& s, uint64_t seed) { return random_tensor(s, seed, -1.0, 1.0, DType::f64); }

// Identity op whose backward counts how often it runs (each node must run exactly once per backward).
Variable counted_identity(const Variable& x, int& calls) {
  return Variable::from_op(x.data().clone(), {x}, [&calls](const Tensor& g) {
    ++calls;
    return std::vector<Tensor>{g};
  }, "counted_identity");
}

template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(AutogradEngine, LeafBasics) {
  Variable x(rand64({2, 3}, 1), true);
  x.set_name("x");
  EXPECT_TRUE(x.is_leaf());
  EXPECT_TRUE(x.requires_grad());
  EXPECT_FALSE(x.grad().defined());
  EXPECT_EQ(x.name(), "x");
  Variable c(rand64({2, 3}, 2));
  EXPECT_FALSE(c.requires_grad());
  Variable y = mul(x, c);
  EXPECT_FALSE(y.is_leaf());
  EXPECT_TRUE(y.requires_grad());
  EXPECT_STREQ(y.node()->op_name, "mul");
}

TEST(AutogradEngine, VariableUsedTwiceSumsGradients) {
  Tensor xt = rand64({4}, 3);
  Variable x(xt, true);
  sum_all(mul(x, x)).backward();  // d/dx sum(x*x) = 2x, from two edges into x
  PT_EXPECT_CLOSE(x.grad(), pt::mul_scalar(xt, 2.0), kF64);

  Variable z(xt, true);
  sum_all(add(add(z, z), z)).backward();  // three uses -> 3
  PT_EXPECT_CLOSE(z.grad(), Tensor::full({4}, 3.0, DType::f64), kF64);
}

TEST(AutogradEngine, DiamondRunsEachNodeOnceWithTheSummedGradient) {
  Tensor xt = rand64({3, 2}, 4);
  Variable x(xt, true);
  int calls = 0;
  Variable a = counted_identity(x, calls);
  Variable d = add(mul_scalar(a, 2.0), exp(a));  // a feeds two branches that meet again
  sum_all(d).backward();
  EXPECT_EQ(calls, 1);
  PT_EXPECT_CLOSE(x.grad(), pt::add_scalar(pt::exp(xt), 2.0), kF64);
  EXPECT_FALSE(a.grad().defined()) << "intermediate gradients are not kept";
}

TEST(AutogradEngine, LeafGradientsAccumulateAcrossBackwardCallsUntilZeroGrad) {
  Tensor xt = rand64({5}, 5);
  Variable x(xt, true);
  auto loss = [&] { return sum_all(square(x)); };  // grad 2x
  loss().backward();
  loss().backward();
  PT_EXPECT_CLOSE(x.grad(), pt::mul_scalar(xt, 4.0), kF64);
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
  loss().backward();
  PT_EXPECT_CLOSE(x.grad(), pt::mul_scalar(xt, 2.0), kF64);
}

TEST(AutogradEngine, LeafGradientsDoNotAliasEachOther) {
  // add's backward hands the same tensor to both sides; each leaf must still own its gradient.
  Variable a(rand64({3}, 6), true), b(rand64({3}, 7), true);
  sum_all(add(a, b)).backward();
  EXPECT_NE(a.grad().storage(), b.grad().storage());
  Tensor ga = a.grad();  // a handle on the same storage
  ga.fill_(5.0);
  PT_EXPECT_CLOSE(b.grad(), Tensor::ones({3}, DType::f64), kF64);
}

TEST(AutogradEngine, OnlyInputsThatRequireGradGetGradients) {
  Variable x(rand64({3}, 8), true), c(rand64({3}, 9), false);
  Variable y = mul(x, c);
  EXPECT_FALSE(y.node()->inputs[1].defined()) << "the graph does not hold constants";
  sum_all(y).backward();
  PT_EXPECT_CLOSE(x.grad(), c.data(), kF64);
  EXPECT_FALSE(c.grad().defined());
}

TEST(AutogradEngine, NoGradRecordsNothingAndRestoresTheMode) {
  Variable x(rand64({3}, 10), true);
  EXPECT_TRUE(grad_enabled());
  {
    NoGradGuard outer;
    {
      NoGradGuard inner;
      EXPECT_FALSE(grad_enabled());
    }
    EXPECT_FALSE(grad_enabled()) << "inner guard restores the outer state, not 'on'";
    Variable y = mul(x, x);
    EXPECT_TRUE(y.is_leaf());
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.node(), nullptr);
    EXPECT_NE(error_of([&] { sum_all(y).backward(); }).find("does not require grad"), std::string::npos);
    // Grad mode is per thread: another thread still records.
    bool other_records = false;
    std::thread([&] { other_records = mul(x, x).requires_grad(); }).join();
    EXPECT_TRUE(other_records);
  }
  EXPECT_TRUE(grad_enabled());
  EXPECT_TRUE(mul(x, x).requires_grad());
}

TEST(AutogradEngine, RetainGraphAllowsASecondBackward) {
  Tensor xt = rand64({4}, 11);
  Variable x(xt, true);
  Variable loss = sum_all(exp(x));
  loss.backward(Tensor(), /*retain_graph=*/true);
  loss.backward();
  PT_EXPECT_CLOSE(x.grad(), pt::mul_scalar(pt::exp(xt), 2.0), kF64);
}

TEST(AutogradEngine, BackwardFreesTheGraph) {
  Variable x(rand64({4}, 12), true);
  Variable h = exp(x);
  Variable loss = sum_all(h);
  loss.backward();
  EXPECT_TRUE(loss.node()->released);
  EXPECT_TRUE(loss.node()->inputs.empty());
  EXPECT_FALSE(loss.node()->fn);
  std::string msg = error_of([&] { loss.backward(); });
  EXPECT_NE(msg.find("already freed"), std::string::npos) << msg;
  EXPECT_NE(msg.find("retain_graph"), std::string::npos) << msg;
  // A new op on a freed intermediate cannot backpropagate through it either.
  msg = error_of([&] { sum_all(mul_scalar(h, 2.0)).backward(); });
  EXPECT_NE(msg.find("already freed"), std::string::npos) << msg;
}

TEST(AutogradEngine, NonScalarOutputNeedsAGradient) {
  Tensor xt = rand64({2, 3}, 13);
  Variable x(xt, true);
  Variable y = mul_scalar(x, 3.0);
  std::string msg = error_of([&] { y.backward(); });
  EXPECT_NE(msg.find("not a scalar"), std::string::npos) << msg;
  msg = error_of([&] { y.backward(Tensor::ones({3, 2}, DType::f64)); });
  EXPECT_NE(msg.find("does not match"), std::string::npos) << msg;
  Tensor g = rand64({2, 3}, 14);
  y.backward(g);  // explicit gradient of the right shape
  PT_EXPECT_CLOSE(x.grad(), pt::mul_scalar(g, 3.0), kF64);
}

TEST(AutogradEngine, WrongGradientShapeFromABackwardIsReported) {
  Variable x(rand64({2, 3}, 15), true);
  Variable y = Variable::from_op(x.data().clone(), {x}, [](const Tensor& g) {
    return std::vector<Tensor>{Tensor::ones({3, 2}, DType::f64)};
  }, "bad_op");
  std::string msg = error_of([&] { sum_all(y).backward(); });
  EXPECT_NE(msg.find("bad_op"), std::string::npos) << msg;
  EXPECT_NE(msg.find("input 0"), std::string::npos) << msg;
}

TEST(AutogradEngine, RequiresGradRules) {
  EXPECT_THROW(Variable(Tensor::zeros({2}, DType::i64), true), Error);
  Variable x(rand64({2}, 16), true);
  Variable y = exp(x);
  EXPECT_THROW(y.set_requires_grad(false), Error);
  Variable c(rand64({2}, 17));
  c.set_requires_grad(true);
  sum_all(c).backward();
  EXPECT_TRUE(c.grad().defined());
}

TEST(AutogradEngine, DeepChainsDoNotOverflowTheStack) {
  // 100k nodes: a recursive topological sort or a recursive destructor would overflow.
  constexpr int kDepth = 100000;
  Variable x(Tensor::full({1}, 0.5, DType::f64), true);
  {
    Variable h = x;
    for (int i = 0; i < kDepth; ++i) h = add_scalar(h, 1e-6);
    sum_all(h).backward();
    EXPECT_DOUBLE_EQ(x.grad().item(), 1.0);
  }
  {
    Variable h = x;  // never backpropagated: the whole chain is destroyed here
    for (int i = 0; i < kDepth; ++i) h = mul_scalar(h, 1.0);
  }
  SUCCEED();
}

// The cast of mixed precision: values convert forward, gradients convert back to the input's dtype (through
// the narrower type when there is one, as in PyTorch).
TEST(AutogradEngine, ToDtypeCastsValuesForwardAndGradientsBack) {
  Tensor xd = test::random_tensor({3, 4}, 71, -2, 2, DType::f64);
  Tensor w = test::random_tensor({3, 4}, 72, -2, 2, DType::f32);
  Variable x(xd, true);
  Variable y = to_dtype(x, DType::f32);
  EXPECT_EQ(y.dtype(), DType::f32);
  EXPECT_TRUE(test::tensors_equal(y.data(), xd.to(DType::f32)));
  sum_all(mul(y, Variable(w))).backward();
  EXPECT_EQ(x.grad().dtype(), DType::f64);
  EXPECT_TRUE(test::tensors_equal(x.grad(), w.to(DType::f64)));

  Variable x32(xd.to(DType::f32), true);
  Variable z = to_dtype(to_dtype(x32, DType::bf16), DType::f32);
  EXPECT_TRUE(test::tensors_equal(z.data(), xd.to(DType::f32).to(DType::bf16).to(DType::f32)));
  sum_all(mul(z, Variable(w))).backward();
  EXPECT_TRUE(test::tensors_equal(x32.grad(), w.to(DType::bf16).to(DType::f32)));

  test::expect_error([&] { to_dtype(x, DType::i64); }, "not a floating dtype");
}

}  // namespace
}  // namespace pt::autograd
