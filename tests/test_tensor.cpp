// Tensor core: views share storage and index correctly, copies convert dtypes, factories and the
// counter-based generator are deterministic, and misuse gives clear errors.
#include <gtest/gtest.h>

#include <cmath>

#include "tensor/ops.h"
#include "tests/test_util.h"

namespace pt {
namespace {

using test::random_tensor;

// Naive element read through shape/strides/offset, independent of the library's copy loops.
double at(const Tensor& t, const std::vector<int64_t>& idx) {
  Tensor base = t.as_strided({int64_t(t.storage()->nbytes() / dtype_size(t.dtype()))}, {1}, 0);
  auto all = base.to_vector<double>();
  int64_t off = t.offset();
  for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * t.strides()[d];
  return all[size_t(off)];
}

TEST(Tensor, FactoriesAndMetadata) {
  Tensor z = Tensor::zeros({2, 3});
  EXPECT_EQ(z.numel(), 6);
  EXPECT_EQ(z.dim(), 2);
  EXPECT_TRUE(z.is_contiguous());
  EXPECT_EQ(z.describe(), "f32[2, 3] cpu");
  for (double v : z.to_vector<double>()) EXPECT_EQ(v, 0.0);
  for (double v : Tensor::full({5}, 2.5, DType::f64).to_vector<double>()) EXPECT_EQ(v, 2.5);
  auto ar = Tensor::arange(3, 12, 4).to_vector<int64_t>();
  EXPECT_EQ(ar, (std::vector<int64_t>{3, 7, 11}));
  auto ar2 = Tensor::arange(5, 0, -2).to_vector<int64_t>();
  EXPECT_EQ(ar2, (std::vector<int64_t>{5, 3, 1}));
  auto e = Tensor::eye(3).to_vector<double>();
  for (int i = 0; i < 9; ++i) EXPECT_EQ(e[i], (i % 4 == 0) ? 1.0 : 0.0);
}

TEST(Tensor, ViewsShareStorageAndIndexCorrectly) {
  Tensor x = random_tensor({4, 5, 6}, 1);
  auto v = x.to_vector<double>();
  auto ref = [&](int64_t i, int64_t j, int64_t k) { return v[size_t((i * 5 + j) * 6 + k)]; };

  Tensor t = x.transpose(0, 2);  // [6, 5, 4]
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.storage(), x.storage());
  Tensor tc = t.contiguous();
  auto tv = tc.to_vector<double>();
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t j = 0; j < 5; ++j)
      for (int64_t k = 0; k < 4; ++k) EXPECT_EQ(tv[size_t((i * 5 + j) * 4 + k)], ref(k, j, i));

  Tensor p = x.permute({1, 2, 0});  // [5, 6, 4]
  EXPECT_EQ(at(p, {2, 3, 1}), ref(1, 2, 3));
  Tensor n = x.narrow(1, 2, 3);  // [4, 3, 6]
  EXPECT_EQ(at(n, {3, 0, 5}), ref(3, 2, 5));
  Tensor s = x.select(2, 4);  // [4, 5]
  EXPECT_EQ(at(s, {1, 3}), ref(1, 3, 4));
  Tensor u = s.unsqueeze(0);
  EXPECT_EQ(u.shape(), (Shape{1, 4, 5}));
  EXPECT_EQ(u.squeeze(0).shape(), (Shape{4, 5}));
  Tensor r = x.reshape({20, -1});
  EXPECT_EQ(r.shape(), (Shape{20, 6}));
  EXPECT_EQ(r.storage(), x.storage());  // contiguous reshape is a view
  Tensor rt = t.reshape({-1});          // non-contiguous reshape copies
  EXPECT_NE(rt.storage(), x.storage());
  EXPECT_EQ(rt.to_vector<double>(), tv);

  Tensor b = random_tensor({1, 3}, 2).expand({4, 3});
  EXPECT_EQ(b.strides()[0], 0);
  auto bv = b.contiguous().to_vector<double>();
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j) EXPECT_EQ(bv[size_t(i * 3 + j)], bv[size_t(j)]);

  // Writing through a view changes the base.
  x.narrow(0, 1, 1).fill_(7.0);
  auto after = x.to_vector<double>();
  EXPECT_EQ(after[30], 7.0);
  EXPECT_EQ(after[0], v[0]);
}

TEST(Tensor, CopyConvertsDtypesAndBroadcasts) {
  Tensor x = random_tensor({3, 4}, 3, -4.0, 4.0, DType::f64);
  auto xv = x.to_vector<double>();
  auto f32 = x.to(DType::f32).to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i) EXPECT_EQ(f32[i], double(float(xv[i])));
  // bf16 keeps 8 mantissa bits, f16 keeps 11: relative rounding error bounded accordingly.
  auto bf = x.to(DType::bf16).to_vector<double>();
  auto h = x.to(DType::f16).to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i) {
    EXPECT_LE(std::abs(bf[i] - xv[i]), std::abs(xv[i]) * (1.0 / 256));
    EXPECT_LE(std::abs(h[i] - xv[i]), std::abs(xv[i]) * (1.0 / 2048));
  }
  auto i64 = x.to(DType::i64).to_vector<int64_t>();
  for (size_t i = 0; i < xv.size(); ++i) EXPECT_EQ(i64[i], int64_t(xv[i]));  // truncation
  Tensor row = random_tensor({4}, 4);
  Tensor dst = Tensor::zeros({3, 4});
  dst.copy_(row);
  auto dv = dst.to_vector<double>();
  auto rv = row.to_vector<double>();
  for (int i = 0; i < 12; ++i) EXPECT_EQ(dv[size_t(i)], rv[size_t(i % 4)]);
  EXPECT_THROW(dst.copy_(random_tensor({5}, 5)), Error);
}

TEST(Tensor, HalfConversionEdgeCases) {
  EXPECT_EQ(f16_to_float(float_to_f16(65504.0f)), 65504.0f);  // largest half
  EXPECT_TRUE(std::isinf(f16_to_float(float_to_f16(70000.0f))));
  EXPECT_EQ(f16_to_float(float_to_f16(5.9604645e-08f)), 5.9604645e-08f);  // smallest subnormal
  EXPECT_EQ(f16_to_float(float_to_f16(1.0f + 1.0f / 4096)), 1.0f);        // tie rounds to even
  EXPECT_TRUE(std::isnan(f16_to_float(float_to_f16(NAN))));
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + 1.0f / 256)), 1.0f);  // tie to even
  EXPECT_EQ(bf16_to_float(float_to_bf16(-3.0f)), -3.0f);
}

TEST(Tensor, RandomIsSeededAndDistributed) {
  Generator g1(42), g2(42), g3(43);
  Tensor a = Tensor::normal({20000}, 1.0, 2.0, g1);
  Tensor b = Tensor::normal({20000}, 1.0, 2.0, g2);
  Tensor c = Tensor::normal({20000}, 1.0, 2.0, g3);
  EXPECT_TRUE(test::tensors_equal(a, b));
  EXPECT_FALSE(test::tensors_equal(a, c));
  auto v = a.to_vector<double>();
  double m = 0, s2 = 0;
  for (double x : v) m += x;
  m /= double(v.size());
  for (double x : v) s2 += (x - m) * (x - m);
  double sd = std::sqrt(s2 / double(v.size()));
  // Bounds of 5 standard errors: se(mean) = sd/sqrt(n), se(sd) ~ sd/sqrt(2n).
  const double n = double(v.size());
  EXPECT_NEAR(m, 1.0, 5 * 2.0 / std::sqrt(n));
  EXPECT_NEAR(sd, 2.0, 5 * 2.0 / std::sqrt(2 * n));
  // The generator advances: a second draw differs from the first.
  Tensor a2 = Tensor::normal({20000}, 1.0, 2.0, g1);
  EXPECT_FALSE(test::tensors_equal(a, a2));
  Generator gu(7);
  auto u = Tensor::uniform({10000}, -2.0, 3.0, gu).to_vector<double>();
  double lo = 1e9, hi = -1e9;
  for (double x : u) { lo = std::min(lo, x); hi = std::max(hi, x); }
  EXPECT_GE(lo, -2.0);
  EXPECT_LT(hi, 3.0);
  EXPECT_LT(lo, -1.9);
  EXPECT_GT(hi, 2.9);
}

TEST(Tensor, ClearErrors) {
  Tensor x = Tensor::zeros({2, 3});
  try {
    x.view({4, 2});
    FAIL() << "view to a wrong size did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[4, 2]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(x.narrow(1, 2, 2), Error);
  EXPECT_THROW(x.select(0, 2), Error);
  EXPECT_THROW(x.transpose(0, 1).view({6}), Error);  // not contiguous
  EXPECT_THROW(x.permute({0, 0}), Error);
  EXPECT_THROW(x.expand({3, 3}), Error);
  EXPECT_THROW(x.item(), Error);
  EXPECT_THROW(x.data<double>(), Error);
  EXPECT_THROW(parse_dtype("float8"), Error);
  EXPECT_THROW(parse_device("tpu"), Error);
}

// Extents read from files are untrusted. A zero extent makes the element count 0 but not the strides, so every
// extent and the running product must be checked ([0, 2^62, 2^62] overflowed int64 here: undefined behaviour).
TEST(Shape, HugeExtentsAreRefusedEvenWhenTheCountIsZero) {
  const int64_t big = int64_t(1) << 62;
  test::expect_error([&] { contiguous_strides({0, big, big}); },
                     "shape [0, 4611686018427387904, 4611686018427387904] is too large");
  test::expect_error([&] { shape_numel({big, big, 0}); }, "is too large");
  test::expect_error([&] { Tensor::empty({0, big, big}); }, "is too large");
  test::expect_error([&] { shape_numel({2, -3}); }, "negative size -3");
  test::expect_error([&] { Tensor::empty({int64_t(1) << 61, 2}, DType::f64); }, "needs more bytes");
  test::expect_error([&] { Tensor::zeros({0}).reshape({big, big, -1}); }, "is too large");
  // What fits still works, zero extents included.
  EXPECT_EQ(contiguous_strides({3, 0, 5}), (Strides{5, 5, 1}));
  EXPECT_EQ(contiguous_strides({0, big, 1}), (Strides{big, 1, 1}));
  EXPECT_EQ(shape_numel({0, big, 1}), 0);
  EXPECT_EQ(Tensor::empty({0, big}).numel(), 0);
}

TEST(Device, AutoResolvesToAUsableDevice) {
  Device d = parse_device("auto");
  EXPECT_EQ(d == Device::cuda, cuda_is_available());
  if (!cuda_is_available()) {
    EXPECT_THROW(parse_device("cuda"), Error);
    EXPECT_THROW(Tensor::zeros({2}, DType::f32, Device::cuda), Error);
  }
}

TEST(CudaTensor, RoundTripAndViewsMatchCpu) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  Tensor x = random_tensor({4, 5, 6}, 11);
  Tensor g = x.to(Device::cuda);
  EXPECT_TRUE(g.is_cuda());
  EXPECT_TRUE(test::tensors_equal(g.to(Device::cpu), x));
  EXPECT_TRUE(test::tensors_equal(g.transpose(0, 2).contiguous(), x.transpose(0, 2).contiguous()));
  EXPECT_TRUE(test::tensors_equal(g.narrow(1, 1, 3).permute({2, 0, 1}).contiguous(),
                                  x.narrow(1, 1, 3).permute({2, 0, 1}).contiguous()));
  for (DType t : {DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8})
    EXPECT_TRUE(test::tensors_equal(g.to(t), x.to(t))) << dtype_name(t);
  // Same generator state -> same values on both devices.
  Generator a(5), b(5);
  EXPECT_TRUE(test::tensors_close(Tensor::normal({1000}, 0, 1, a, DType::f32, Device::cuda),
                                  Tensor::normal({1000}, 0, 1, b), test::kElementwiseF32));
  Tensor f = Tensor::zeros({3, 4}, DType::f32, Device::cuda);
  f.narrow(1, 1, 2).fill_(3.0);
  Tensor fc = Tensor::zeros({3, 4});
  fc.narrow(1, 1, 2).fill_(3.0);
  EXPECT_TRUE(test::tensors_equal(f, fc));
  EXPECT_TRUE(test::tensors_equal(Tensor::arange(0, 10, 3, DType::i64, Device::cuda), Tensor::arange(0, 10, 3)));
}

}  // namespace
}  // namespace pt
