// matmul / gemm_ / linear / syrk_ against naive triple loops in double, on the CPU and (Cuda* suites)
// CUDA against the CPU.
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace pt {
namespace {

using test::random_tensor;

// Element (i, j) of op(t) for a logical [.., R, C] matrix stored row-major in `v` at `base`.
double at(const std::vector<double>& v, int64_t base, int64_t cols, bool trans, int64_t i, int64_t j) {
  return trans ? v[size_t(base + j * cols + i)] : v[size_t(base + i * cols + j)];
}

// Naive op(a)·op(b) in double; b may be 2-D and shared across a's batches. Result f64 [..., M, N].
Tensor naive_matmul(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  const auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  const int64_t ra = a.size(-2), ca = a.size(-1), rb = b.size(-2), cb = b.size(-1);
  const int64_t m = ta ? ca : ra, k = ta ? ra : ca, n = tb ? rb : cb;
  const int64_t batch = a.numel() / (ra * ca);
  const bool shared = b.dim() == 2;
  std::vector<double> out(size_t(batch * m * n));
  for (int64_t p = 0; p < batch; ++p)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t q = 0; q < k; ++q)
          s += at(va, p * ra * ca, ca, ta, i, q) * at(vb, shared ? 0 : p * rb * cb, cb, tb, q, j);
        out[size_t((p * m + i) * n + j)] = s;
      }
  Shape shape(a.shape().begin(), a.shape().end() - 2);
  shape.push_back(m);
  shape.push_back(n);
  return Tensor::from_vector<double>(out, shape);
}

Tensor naive_gram(const Tensor& x) {  // Xᵀ·X in double
  return naive_matmul(x, x, true, false);
}

test::Tolerance tol_for(DType t) { return t == DType::f64 ? test::kF64 : test::kReductionF32; }

// Operand shapes [.., rows, cols] for op() given the logical product sizes.
Shape operand_shape(Shape batch, int64_t rows, int64_t cols, bool trans) {
  batch.push_back(trans ? cols : rows);
  batch.push_back(trans ? rows : cols);
  return batch;
}

TEST(OpsMatmul, TwoDimAllTransposes) {
  for (DType dt : {DType::f32, DType::f64})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
        Tensor a = random_tensor(operand_shape({}, 7, 13, ta), 11 + ta, -1, 1, dt);
        Tensor b = random_tensor(operand_shape({}, 13, 5, tb), 21 + tb, -1, 1, dt);
        Tensor c = matmul(a, b, ta, tb);
        EXPECT_EQ(c.shape(), (Shape{7, 5}));
        EXPECT_EQ(c.dtype(), dt);
        PT_EXPECT_CLOSE(c, naive_matmul(a, b, ta, tb), tol_for(dt));
      }
}

// A single output row goes through gemv (not gemm): every transpose, a batch, a shared B, a column view of A and
// a linear with bias and accumulation (beta = 1).
TEST(OpsMatmul, SingleRowProductsTakeTheMatrixVectorPath) {
  for (DType dt : {DType::f32, DType::f64})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
        Tensor a = random_tensor(operand_shape({}, 1, 37, ta), 41 + ta, -1, 1, dt);
        Tensor b = random_tensor(operand_shape({}, 37, 23, tb), 51 + tb, -1, 1, dt);
        PT_EXPECT_CLOSE(matmul(a, b, ta, tb), naive_matmul(a, b, ta, tb), tol_for(dt));
        Tensor a3 = random_tensor(operand_shape({3}, 1, 37, ta), 61, -1, 1, dt);
        Tensor b3 = random_tensor(operand_shape({3}, 37, 23, tb), 62, -1, 1, dt);
        PT_EXPECT_CLOSE(matmul(a3, b3, ta, tb), naive_matmul(a3, b3, ta, tb), tol_for(dt));
        PT_EXPECT_CLOSE(matmul(a3, b, ta, tb), naive_matmul(a3, b, ta, tb), tol_for(dt));
      }
  Tensor wide = random_tensor({37, 4}, 71);
  Tensor column = wide.narrow(1, 2, 1).t();  // [1, 37] with column stride 4
  Tensor b = random_tensor({37, 23}, 72);
  PT_EXPECT_CLOSE(matmul(column, b), naive_matmul(column.contiguous(), b, false, false), test::kReductionF32);
  Tensor w = random_tensor({23, 37}, 73), bias = random_tensor({23}, 74), x = random_tensor({1, 37}, 75);
  Tensor expect = naive_matmul(x, w, false, true).to(DType::f32).reshape({23});
  std::vector<float> e = expect.to_vector<float>(), bv = bias.to_vector<float>();
  for (size_t j = 0; j < e.size(); ++j) e[j] += bv[j];
  PT_EXPECT_CLOSE(linear(x, w, bias).reshape({23}), Tensor::from_vector(e, {23}), test::kReductionF32);
}

TEST(OpsMatmul, BatchedAndSharedB) {
  for (DType dt : {DType::f32, DType::f64})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
        Tensor a = random_tensor(operand_shape({3}, 7, 13, ta), 31, -1, 1, dt);
        Tensor b = random_tensor(operand_shape({3}, 13, 5, tb), 32, -1, 1, dt);
        PT_EXPECT_CLOSE(matmul(a, b, ta, tb), naive_matmul(a, b, ta, tb), tol_for(dt));
        Tensor b2 = random_tensor(operand_shape({}, 13, 5, tb), 33, -1, 1, dt);
        Tensor c = matmul(a, b2, ta, tb);
        EXPECT_EQ(c.shape(), (Shape{3, 7, 5}));
        PT_EXPECT_CLOSE(c, naive_matmul(a, b2, ta, tb), tol_for(dt));
        Tensor a4 = random_tensor(operand_shape({2, 3}, 4, 9, ta), 34, -1, 1, dt);
        Tensor b4 = random_tensor(operand_shape({2, 3}, 9, 6, tb), 35, -1, 1, dt);
        PT_EXPECT_CLOSE(matmul(a4, b4, ta, tb), naive_matmul(a4, b4, ta, tb), tol_for(dt));
        PT_EXPECT_CLOSE(matmul(a4, b2.narrow(tb ? 1 : 0, 0, 9), ta, tb),
                        naive_matmul(a4, b2.narrow(tb ? 1 : 0, 0, 9), ta, tb), tol_for(dt));
      }
}

TEST(OpsMatmul, StridedViews) {
  // Transposed views (column-major storage), narrowed columns (row stride > cols), a permuted batch
  // and a view with no unit stride (must be copied) all give the naive result.
  Tensor base = random_tensor({13, 7}, 41);
  Tensor at_view = base.t();                               // [7, 13], strides (1, 7)
  Tensor wide = random_tensor({13, 20}, 42);
  Tensor narrowed = wide.narrow(1, 3, 5);                  // [13, 5], strides (20, 1)
  PT_EXPECT_CLOSE(matmul(at_view, narrowed), naive_matmul(at_view, narrowed, false, false), test::kReductionF32);
  PT_EXPECT_CLOSE(matmul(at_view, narrowed.t(), false, true), naive_matmul(at_view, narrowed, false, false),
                  test::kReductionF32);
  Tensor x = random_tensor({13, 3, 7}, 43);
  Tensor permuted = x.permute({1, 2, 0});                  // [3, 7, 13], strides (7, 1, 21)
  Tensor bb = random_tensor({3, 13, 5}, 44);
  PT_EXPECT_CLOSE(matmul(permuted, bb), naive_matmul(permuted, bb, false, false), test::kReductionF32);
  Tensor big = random_tensor({7, 26}, 45);
  Tensor every_other = big.as_strided({7, 13}, {26, 2}, big.offset());
  PT_EXPECT_CLOSE(matmul(every_other, narrowed), naive_matmul(every_other, narrowed, false, false),
                  test::kReductionF32);
  Tensor expanded = random_tensor({1, 7, 13}, 46).expand({3, 7, 13});  // batch stride 0
  PT_EXPECT_CLOSE(matmul(expanded, bb), naive_matmul(expanded, bb, false, false), test::kReductionF32);
}

TEST(OpsMatmul, EmptyInnerDimGivesZeros) {
  Tensor a = Tensor::zeros({4, 0}), b = Tensor::zeros({0, 3});
  Tensor c = matmul(a, b);
  EXPECT_EQ(c.shape(), (Shape{4, 3}));
  EXPECT_TRUE(test::tensors_equal(c, Tensor::zeros({4, 3})));
}

TEST(OpsGemm, NarrowedViewOfWiderMatrix) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor w = random_tensor({100, 300}, 51, -1, 1, dt);
    Tensor before = w.clone();
    Tensor c = w.narrow(1, 128, 64);
    Tensor a = random_tensor({100, 32}, 52, -1, 1, dt), b = random_tensor({32, 64}, 53, -1, 1, dt);
    const double alpha = 0.75, beta = -1.5;
    Tensor expected = Tensor::from_vector<double>(
        [&] {
          auto ab = naive_matmul(a, b, false, false).to_vector<double>();
          auto c0 = c.to_vector<double>();
          for (size_t i = 0; i < ab.size(); ++i) ab[i] = alpha * ab[i] + beta * c0[i];
          return ab;
        }(),
        {100, 64});
    gemm_(c, a, b, false, false, alpha, beta);
    PT_EXPECT_CLOSE(c, expected, tol_for(dt));
    // Columns outside the view are bit-for-bit untouched.
    EXPECT_TRUE(test::tensors_equal(w.narrow(1, 0, 128), before.narrow(1, 0, 128)));
    EXPECT_TRUE(test::tensors_equal(w.narrow(1, 192, 108), before.narrow(1, 192, 108)));
  }
}

TEST(OpsGemm, BatchedTransposedAndNonBlasOutput) {
  Tensor a = random_tensor({3, 13, 7}, 61), b = random_tensor({3, 5, 13}, 62);
  Tensor c = random_tensor({3, 7, 5}, 63);
  auto ab = naive_matmul(a, b, true, true).to_vector<double>();
  auto c0 = c.to_vector<double>();
  for (size_t i = 0; i < ab.size(); ++i) ab[i] = 2.0 * ab[i] + 0.5 * c0[i];
  gemm_(c, a, b, true, true, 2.0, 0.5);
  PT_EXPECT_CLOSE(c, Tensor::from_vector<double>(ab, {3, 7, 5}), test::kReductionF32);
  // A transposed output view has no unit last stride: gemm_ goes through a temporary and writes back.
  Tensor ct_store = random_tensor({5, 7}, 64);
  Tensor ct = ct_store.t();  // [7, 5]
  Tensor a2 = random_tensor({7, 13}, 65), b2 = random_tensor({13, 5}, 66);
  gemm_(ct, a2, b2, false, false, 1.0, 0.0);
  PT_EXPECT_CLOSE(ct, naive_matmul(a2, b2, false, false), test::kReductionF32);
}

TEST(OpsLinear, WithAndWithoutBias) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = random_tensor({2, 7, 13}, 71, -1, 1, dt), w = random_tensor({5, 13}, 72, -1, 1, dt);
    Tensor bias = random_tensor({5}, 73, -1, 1, dt);
    auto xw = naive_matmul(x, w, false, true);
    PT_EXPECT_CLOSE(linear(x, w, Tensor()), xw, tol_for(dt));
    auto v = xw.to_vector<double>();
    auto bv = bias.to_vector<double>();
    for (size_t i = 0; i < v.size(); ++i) v[i] += bv[i % 5];
    Tensor y = linear(x, w, bias);
    EXPECT_EQ(y.shape(), (Shape{2, 7, 5}));
    PT_EXPECT_CLOSE(y, Tensor::from_vector<double>(v, {2, 7, 5}), tol_for(dt));
  }
  EXPECT_THROW(linear(random_tensor({3, 4}, 74), random_tensor({5, 6}, 75), Tensor()), Error);
  EXPECT_THROW(linear(random_tensor({3, 4}, 74), random_tensor({5, 4}, 75), random_tensor({4}, 76)), Error);
}

TEST(OpsSyrk, UpdatesTheUpperTriangleOnly) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = random_tensor({37, 11}, 81, -1, 1, dt);
    Tensor h0 = random_tensor({11, 11}, 82, -1, 1, dt);
    Tensor h = add(h0, h0.t());  // symmetric start
    auto g = naive_gram(x).to_vector<double>();
    auto hv = h.to_vector<double>();
    for (size_t i = 0; i < g.size(); ++i) g[i] = 0.5 * g[i] + 2.0 * hv[i];
    for (int64_t r = 1; r < 11; ++r)  // sentinels in the strict lower triangle: syrk_ neither reads nor writes it
      for (int64_t c = 0; c < r; ++c) h.select(0, r).select(0, c).fill_(-7.5);
    syrk_(h, x, 0.5, 2.0);
    const std::vector<double> out = h.to_vector<double>();
    for (int64_t r = 0; r < 11; ++r)
      for (int64_t c = 0; c < r; ++c) {
        EXPECT_EQ(out[size_t(r * 11 + c)], -7.5) << r << "," << c;
      }
    symmetrize_(h);
    PT_EXPECT_CLOSE(h, Tensor::from_vector<double>(g, {11, 11}), tol_for(dt));
    EXPECT_TRUE(test::tensors_equal(h, h.t().contiguous()));
  }
  // X given as a transposed view; beta = 0 ignores (NaN) garbage in H.
  Tensor xt = random_tensor({11, 37}, 83).t();
  Tensor h = Tensor::full({11, 11}, std::nan(""));
  syrk_(h, xt, 1.0, 0.0);
  symmetrize_(h);
  PT_EXPECT_CLOSE(h, naive_gram(xt), test::kReductionF32);
}

TEST(OpsMatmul, Errors) {
  Tensor a = random_tensor({2, 3}, 91), b = random_tensor({4, 5}, 92);
  try {
    matmul(a, b);
    FAIL() << "expected an inner-dimension error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("matmul"), std::string::npos) << msg;
    EXPECT_NE(msg.find(shape_str({2, 3})), std::string::npos) << msg;
    EXPECT_NE(msg.find(shape_str({4, 5})), std::string::npos) << msg;
  }
  EXPECT_THROW(matmul(Tensor::ones({2, 3}, DType::i64), Tensor::ones({3, 2}, DType::i64)), Error);
  EXPECT_THROW(matmul(a, random_tensor({3, 2}, 93, -1, 1, DType::f64)), Error);       // mixed dtypes
  EXPECT_THROW(matmul(random_tensor({2, 2, 3}, 94), random_tensor({3, 3, 2}, 95)), Error);  // batch mismatch
  EXPECT_THROW(matmul(random_tensor({3}, 96), random_tensor({3, 2}, 97)), Error);          // 1-D
  EXPECT_THROW(gemm_(Tensor::zeros({2, 4}), a, random_tensor({3, 5}, 98), false, false, 1, 0), Error);
  EXPECT_THROW(syrk_(Tensor::zeros({4, 4}), random_tensor({6, 5}, 99), 1, 0), Error);
}

TEST(OpsMatmul, AllowTf32Flag) {
  EXPECT_FALSE(allow_tf32());
  set_allow_tf32(true);
  EXPECT_TRUE(allow_tf32());
  set_allow_tf32(false);
  EXPECT_FALSE(allow_tf32());
}

// ---- CUDA parity -------------------------------------------------------------------------------------

TEST(CudaMatmul, MatchesCpu) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  for (DType dt : {DType::f32, DType::f64})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
        Tensor a = random_tensor(operand_shape({3}, 37, 65, ta), 101, -1, 1, dt);
        Tensor b = random_tensor(operand_shape({3}, 65, 29, tb), 102, -1, 1, dt);
        Tensor b2 = random_tensor(operand_shape({}, 65, 29, tb), 103, -1, 1, dt);
        const test::Tolerance tol = dt == DType::f64 ? test::kF64 : test::kReductionF32;
        PT_EXPECT_CLOSE(matmul(a.to(Device::cuda), b.to(Device::cuda), ta, tb), matmul(a, b, ta, tb), tol);
        PT_EXPECT_CLOSE(matmul(a.to(Device::cuda), b2.to(Device::cuda), ta, tb), matmul(a, b2, ta, tb), tol);
        Tensor a2 = a.select(0, 1);
        PT_EXPECT_CLOSE(matmul(a2.to(Device::cuda), b2.to(Device::cuda), ta, tb), matmul(a2, b2, ta, tb), tol);
      }
  // Strided views on the device: transposed and permuted operands are used in place.
  Tensor x = random_tensor({13, 3, 7}, 104), y = random_tensor({3, 13, 5}, 105);
  Tensor xd = x.to(Device::cuda), yd = y.to(Device::cuda);
  PT_EXPECT_CLOSE(matmul(xd.permute({1, 2, 0}), yd), matmul(x.permute({1, 2, 0}), y), test::kReductionF32);
  PT_EXPECT_CLOSE(matmul(yd.transpose(1, 2), yd, false, false), matmul(y.transpose(1, 2), y), test::kReductionF32);
}

TEST(CudaMatmul, HalfMatchesCpuOnRoundedInputs) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  for (DType half : {DType::f16, DType::bf16}) {
    SCOPED_TRACE(dtype_name(half));
    // Round the inputs to the half type first so CPU f32 and CUDA see the same numbers.
    Tensor a = random_tensor({2, 33, 70}, 111).to(half).to(DType::f32);
    Tensor b = random_tensor({70, 17}, 112).to(half).to(DType::f32);
    Tensor bias = random_tensor({17}, 113).to(half).to(DType::f32);
    Tensor c = matmul(a.to(Device::cuda, half), b.to(Device::cuda, half));
    EXPECT_EQ(c.dtype(), half);
    PT_EXPECT_CLOSE(c.to(DType::f32), matmul(a, b), test::kHalf);
    Tensor y = linear(a.to(Device::cuda, half), b.t().to(Device::cuda, half), bias.to(Device::cuda, half));
    PT_EXPECT_CLOSE(y.to(DType::f32), linear(a, b.t().contiguous(), bias), test::kHalf);
  }
}

TEST(CudaMatmul, GemmLinearSyrk) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  Tensor w = random_tensor({100, 300}, 121);
  Tensor a = random_tensor({100, 32}, 122), b = random_tensor({32, 64}, 123);
  Tensor wd = w.to(Device::cuda);
  gemm_(wd.narrow(1, 128, 64), a.to(Device::cuda), b.to(Device::cuda), false, false, 0.5, -2.0);
  Tensor wc = w.clone();
  gemm_(wc.narrow(1, 128, 64), a, b, false, false, 0.5, -2.0);
  PT_EXPECT_CLOSE(wd, wc, test::kReductionF32);
  EXPECT_TRUE(test::tensors_equal(wd.narrow(1, 0, 128), w.narrow(1, 0, 128)));

  Tensor x = random_tensor({2, 7, 13}, 124), lw = random_tensor({5, 13}, 125), lb = random_tensor({5}, 126);
  PT_EXPECT_CLOSE(linear(x.to(Device::cuda), lw.to(Device::cuda), lb.to(Device::cuda)), linear(x, lw, lb),
                  test::kReductionF32);
  PT_EXPECT_CLOSE(linear(x.to(Device::cuda), lw.to(Device::cuda), Tensor()), linear(x, lw, Tensor()),
                  test::kReductionF32);

  for (DType dt : {DType::f32, DType::f64}) {
    Tensor xs = random_tensor({57, 19}, 127, -1, 1, dt);
    Tensor h0 = random_tensor({19, 19}, 128, -1, 1, dt);
    Tensor h = add(h0, h0.t());
    Tensor hd = h.to(Device::cuda);
    syrk_(h, xs, 0.25, 1.0);
    syrk_(hd, xs.to(Device::cuda), 0.25, 1.0);
    symmetrize_(h);
    symmetrize_(hd);
    PT_EXPECT_CLOSE(hd, h, dt == DType::f64 ? test::kF64 : test::kReductionF32);
    Tensor hz = Tensor::empty({19, 19}, dt, Device::cuda);  // poisoned; beta = 0 must not read it
    syrk_(hz, xs.t().contiguous().to(Device::cuda).t(), 1.0, 0.0);
    symmetrize_(hz);
    PT_EXPECT_CLOSE(hz, naive_gram(xs), dt == DType::f64 ? test::kF64 : test::kReductionF32);
  }
}

TEST(CudaMatmul, Tf32IsOptIn) {
  PT_SKIP_IF_NO_CUDA();
  Tensor a = random_tensor({64, 256}, 131), b = random_tensor({256, 48}, 132);
  Tensor ref = matmul(a, b);
  set_allow_tf32(true);
  Tensor fast = matmul(a.to(Device::cuda), b.to(Device::cuda));
  set_allow_tf32(false);
  PT_EXPECT_CLOSE(fast, ref, (test::Tolerance{2e-2, 2e-2}));  // TF32 keeps 10 mantissa bits
  PT_EXPECT_CLOSE(matmul(a.to(Device::cuda), b.to(Device::cuda)), ref, test::kReductionF32);
}

TEST(CudaMatmul, Errors) {
  PT_SKIP_IF_NO_CUDA();
  Tensor a = random_tensor({2, 3}, 141), b = random_tensor({3, 4}, 142);
  EXPECT_THROW(matmul(a, b.to(Device::cuda)), Error);  // mixed devices
  EXPECT_THROW(matmul(a.to(Device::cuda), random_tensor({4, 4}, 143).to(Device::cuda)), Error);
  EXPECT_THROW(matmul(Tensor::ones({2, 3}, DType::i64, Device::cuda), Tensor::ones({3, 2}, DType::i64, Device::cuda)),
               Error);
  EXPECT_THROW(syrk_(Tensor::zeros({3, 3}, DType::f16, Device::cuda), a.to(Device::cuda, DType::f16), 1, 0), Error);
}

}  // namespace
}  // namespace pt
