// The CPU kernels of the packed formats on both instruction sets (sparse/cpu_isa.h): the portable loops and BLAS,
// and the AVX-512 kernels for few tokens (sparse/cpu_avx512.h: dense at 2..16 tokens, bitmap and 2of4 at one
// token), each against the f64 masked-dense product on odd shapes (partial 16-lane chunks, partial bitmap and
// 2:4 metadata words, output rows that leave a partial register block, token counts that leave a partial token
// block), with and without bias. The AVX-512 legs skip on a CPU without AVX-512 (the portable legs still run).
#include <gtest/gtest.h>

#include "sparse/cpu_isa.h"
#include "sparse/packed_linear.h"
#include "test_sparse_linear_util.h"
#include "test_util.h"

namespace pt {
namespace {

using sparse::LinearKernel;
using sparse::cpu::Isa;

std::vector<Isa> isas_of_this_cpu() {
  std::vector<Isa> out = {Isa::portable};
  if (sparse::cpu::avx512_supported()) out.push_back(Isa::avx512);
  return out;
}

struct Dims {
  int64_t out, in;
};

std::shared_ptr<sparse::PackedLinearWeight> pack(LinearKernel k, const Tensor& w, const Tensor& keep) {
  return sparse::pack_linear_weight(k, w, keep, DType::f32, "test.weight");
}

// Within f32 rounding of the reference; exactly 0 where the reference is all 0 (everything pruned, no bias).
::testing::AssertionResult matches(const Tensor& y, const Tensor& ref) {
  if (sum_all(abs(ref)).item() == 0.0) return test::tensors_equal(y, ref.to(y.dtype()));
  const double err = test::relative_error(y, ref);
  if (err < 1e-5) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "relative error " << err;
}

TEST(SparseLinearIsa, TheActiveIsaFollowsTheCpuAndCanBeForcedToPortable) {
  const Isa native = sparse::cpu::avx512_supported() ? Isa::avx512 : Isa::portable;
  EXPECT_EQ(sparse::cpu::active_isa(), native);
  {
    sparse::cpu::ScopedIsa portable(Isa::portable);
    EXPECT_EQ(sparse::cpu::active_isa(), Isa::portable);
  }
  EXPECT_EQ(sparse::cpu::active_isa(), native);
  if (!sparse::cpu::avx512_supported())
    test::expect_error([] { sparse::cpu::ScopedIsa forced(Isa::avx512); }, "cannot run the avx512 kernels");
}

// dense: 1..17 tokens around the 4-token blocks, rows around the 6-row blocks, inputs around the 16-lane chunks.
TEST(SparseLinearIsa, DenseAtFewTokensEqualsTheMaskedDenseProduct) {
  for (const Isa isa : isas_of_this_cpu()) {
    sparse::cpu::ScopedIsa scope(isa);
    for (const Dims d :
         {Dims{1, 1}, Dims{5, 3}, Dims{7, 16}, Dims{13, 17}, Dims{37, 45}, Dims{6, 100}, Dims{70, 2052}}) {
      const uint64_t seed = uint64_t(d.out * 7919 + d.in);
      const Tensor keep = test::random_mask(d.out, d.in, 0.5, seed);
      const Tensor w = apply_mask(test::random_tensor({d.out, d.in}, seed + 1), keep);  // zeros in place
      const auto packed = pack(LinearKernel::dense, w, Tensor());
      for (const int64_t tokens : {1, 2, 3, 4, 5, 7, 8, 13, 16, 17}) {
        const Tensor x = test::random_tensor({tokens, d.in}, seed + 2 + uint64_t(tokens));
        const Tensor bias = tokens % 2 ? test::random_tensor({d.out}, seed + 3) : Tensor();
        EXPECT_TRUE(matches(packed->forward(x, bias), test::masked_dense_reference(x, w, keep, bias)))
            << sparse::cpu::isa_name(isa) << " " << d.out << "x" << d.in << ", " << tokens << " tokens";
      }
    }
    // A batched, non-contiguous input: x [2, 5, in] read through a transposed view.
    const Tensor w = test::random_tensor({19, 40}, 5);
    const Tensor x = test::random_tensor({2, 40, 5}, 6).transpose(1, 2);
    const Tensor bias = test::random_tensor({19}, 7);
    const Tensor y = pack(LinearKernel::dense, w, Tensor())->forward(x, bias);
    EXPECT_EQ(y.shape(), (Shape{2, 5, 19}));
    EXPECT_TRUE(matches(y, test::masked_dense_reference(x, w, Tensor::ones({19, 40}, DType::u8), bias)))
        << sparse::cpu::isa_name(isa);
  }
}

// bitmap and 2of4 at one token: inputs that end mid-word, an odd number of words, rows with nothing kept.
TEST(SparseLinearIsa, BitmapAndTwoFourAtOneTokenEqualTheMaskedDenseProduct) {
  for (const Isa isa : isas_of_this_cpu()) {
    sparse::cpu::ScopedIsa scope(isa);
    for (const Dims d :
         {Dims{3, 1}, Dims{5, 31}, Dims{7, 32}, Dims{9, 33}, Dims{13, 64}, Dims{17, 100}, Dims{33, 2052}}) {
      for (const double sparsity : {0.0, 0.5, 0.9, 1.0}) {
        const uint64_t seed = uint64_t(d.out * 131 + d.in + int(sparsity * 10));
        const Tensor w = test::random_tensor({d.out, d.in}, seed);
        const Tensor keep = test::random_mask(d.out, d.in, sparsity, seed + 1);
        const Tensor x = test::random_tensor({1, d.in}, seed + 2);
        const Tensor bias = sparsity < 0.6 ? test::random_tensor({d.out}, seed + 3) : Tensor();
        const Tensor ref = test::masked_dense_reference(x, w, keep, bias);
        const Tensor y = pack(LinearKernel::bitmap, w, keep)->forward(x, bias);
        EXPECT_TRUE(matches(y, ref)) << "bitmap " << sparse::cpu::isa_name(isa) << " " << d.out << "x" << d.in
                                     << " at " << sparsity;
      }
      if (d.in % 4 != 0) continue;  // 2:4 needs whole groups of 4 inputs
      const uint64_t seed = uint64_t(d.out * 977 + d.in);
      const Tensor w = test::random_tensor({d.out, d.in}, seed);
      const Tensor keep = test::random_two_four_mask(d.out, d.in, seed + 1);
      for (const bool with_bias : {true, false}) {
        const Tensor x = test::random_tensor({1, 1, d.in}, seed + 2 + with_bias);  // [batch, tokens, in]
        const Tensor bias = with_bias ? test::random_tensor({d.out}, seed + 3) : Tensor();
        const Tensor y = pack(LinearKernel::two_four, w, keep)->forward(x, bias);
        EXPECT_EQ(y.shape(), (Shape{1, 1, d.out}));
        EXPECT_TRUE(matches(y, test::masked_dense_reference(x, w, keep, bias)))
            << "2of4 " << sparse::cpu::isa_name(isa) << " " << d.out << "x" << d.in;
      }
    }
  }
}

}  // namespace
}  // namespace pt
