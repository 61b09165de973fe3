// causal_attention_cpu (the blocked inference kernel) against a naive loop written here and against the
// composition the model trains with (matmul -> causal softmax -> matmul), on block-straddling lengths, queries
// that are the tail of a longer key sequence, and queries that see no key at all.
#include <cmath>

#include "tensor/ops.h"
#include "tensor/ops/causal_attention.h"
#include "tests/test_util.h"

namespace pt {
namespace {

// out[b, i, h*D + d] = sum_j softmax_j(q_i . k_j over j <= i + Tk - Tq) v_j[d], in double.
Tensor naive_attention(const Tensor& q, const Tensor& k, const Tensor& v) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), D = q.size(3);
  const auto Q = q.to_vector<double>(), K = k.to_vector<double>(), V = v.to_vector<double>();
  std::vector<double> out(size_t(B * Tq * H * D), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Tq; ++i) {
        const int64_t seen = std::clamp<int64_t>(i + Tk - Tq + 1, 0, Tk);
        std::vector<double> s(static_cast<size_t>(seen));
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < seen; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += Q[size_t(((b * H + h) * Tq + i) * D + d)] * K[size_t(((b * H + h) * Tk + j) * D + d)];
          s[size_t(j)] = dot;
          mx = std::max(mx, dot);
        }
        for (double& x : s) sum += (x = std::exp(x - mx));
        for (int64_t d = 0; d < D; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < seen; ++j) acc += s[size_t(j)] / sum * V[size_t(((b * H + h) * Tk + j) * D + d)];
          out[size_t((b * Tq + i) * H * D + h * D + d)] = acc;
        }
      }
  return Tensor::from_vector(out, {B, Tq, H * D}).to(q.dtype());
}

// The training path's composition, laid out like the kernel's output.
Tensor composed_attention(const Tensor& q, const Tensor& k, const Tensor& v) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), D = q.size(3);
  Tensor ctx = matmul(softmax(matmul(q, k, false, true), true), v);  // [B, H, Tq, D]
  return ctx.permute({0, 2, 1, 3}).contiguous().reshape({B, Tq, H * D});
}

struct Case {
  int64_t B, H, Tq, Tk, D;
};

TEST(CausalAttention, MatchesNaiveLoopAndTheComposition) {
  // 300 queries: two full blocks of 128 and a partial one; 5 of 9: the tail of a longer sequence;
  // 7 of 3: the first four queries see no key (all-zero rows).
  for (const Case c : {Case{2, 3, 300, 300, 16}, Case{1, 2, 5, 9, 8}, Case{1, 1, 7, 3, 4}, Case{1, 2, 129, 129, 64}})
    for (DType dt : {DType::f32, DType::f64}) {
      SCOPED_TRACE("B" + std::to_string(c.B) + " H" + std::to_string(c.H) + " Tq" + std::to_string(c.Tq) + " Tk" +
                   std::to_string(c.Tk) + " " + dtype_name(dt));
      const Tensor q = test::random_tensor({c.B, c.H, c.Tq, c.D}, 1, -1, 1, dt);
      const Tensor k = test::random_tensor({c.B, c.H, c.Tk, c.D}, 2, -1, 1, dt);
      const Tensor v = test::random_tensor({c.B, c.H, c.Tk, c.D}, 3, -1, 1, dt);
      const Tensor got = causal_attention_cpu(q, k, v);
      const test::Tolerance tol = dt == DType::f64 ? test::kF64 : test::kReductionF32;
      PT_EXPECT_CLOSE(got, naive_attention(q, k, v), tol);
      PT_EXPECT_CLOSE(got, composed_attention(q, k, v), tol);
    }
}

TEST(CausalAttention, RejectsMismatchedOrNonContiguousInputs) {
  const Tensor q = test::random_tensor({1, 2, 4, 8}, 1), k = test::random_tensor({1, 2, 6, 8}, 2);
  test::expect_error([&] { causal_attention_cpu(q, k, test::random_tensor({1, 2, 5, 8}, 3)); }, "do not fit");
  test::expect_error([&] { causal_attention_cpu(q.permute({0, 2, 1, 3}), k, k); }, "contiguous");
  test::expect_error([&] { causal_attention_cpu(q, k.to(DType::f64), k); }, "causal_attention_cpu");
}

}  // namespace
}  // namespace pt
