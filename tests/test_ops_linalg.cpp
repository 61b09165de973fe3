// cholesky / cholesky_inverse / triangular_solve / symmetrize_ against hand-written references in double (a
// Cholesky–Banachiewicz loop, products checked against the input or the identity), on the CPU and
// (Cuda* suites) CUDA against the CPU; the tiled transpose of the CUDA mirror stepped through on the CPU.
#include <cmath>
#include <string>
#include <vector>

#include "tensor/cuda/mirror_tiles.h"
#include "tests/test_util.h"

namespace pt {
namespace {

using test::random_tensor;
using Mat = std::vector<double>;  // row-major n x n (or rows x cols)

// SPD matrix Xᵀ·X + n·I from a random X [2n, n], built in double.
Tensor make_spd(int64_t n, uint64_t seed, DType dt) {
  const auto x = random_tensor({2 * n, n}, seed, -1, 1, DType::f64).to_vector<double>();
  Mat a(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = i == j ? double(n) : 0.0;
      for (int64_t r = 0; r < 2 * n; ++r) s += x[size_t(r * n + i)] * x[size_t(r * n + j)];
      a[size_t(i * n + j)] = s;
    }
  return Tensor::from_vector<double>(a, {n, n}).to(dt);
}

// Cholesky–Banachiewicz: row by row, L[i][j] from the already known entries.
Mat naive_cholesky(const Mat& a, int64_t n) {
  Mat l(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double s = a[size_t(i * n + j)];
      for (int64_t k = 0; k < j; ++k) s -= l[size_t(i * n + k)] * l[size_t(j * n + k)];
      l[size_t(i * n + j)] = i == j ? std::sqrt(s) : s / l[size_t(j * n + j)];
    }
  return l;
}

// op(a)·op(b) for row-major a [m, k] and b [k, n] (after transposes), in double.
Mat mul(const Mat& a, const Mat& b, int64_t m, int64_t k, int64_t n, bool ta = false, bool tb = false) {
  Mat c(size_t(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t q = 0; q < k; ++q)
        s += (ta ? a[size_t(q * m + i)] : a[size_t(i * k + q)]) * (tb ? b[size_t(j * k + q)] : b[size_t(q * n + j)]);
      c[size_t(i * n + j)] = s;
    }
  return c;
}

Tensor as_tensor(const Mat& m, int64_t rows, int64_t cols) { return Tensor::from_vector<double>(m, {rows, cols}); }

void expect_triangular(const Tensor& t, bool lower) {
  const auto v = t.to_vector<double>();
  const int64_t n = t.size(0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < n; ++c)
      if (lower ? c > r : c < r) {
        EXPECT_EQ(v[size_t(r * n + c)], 0.0) << "(" << r << ", " << c << ")";
      }
}

test::Tolerance tol_for(DType dt) { return dt == DType::f64 ? test::kF64 : test::kReductionF32; }
// L·Lᵀ reproduces A up to rounding relative to the norm of A (entries up to ~100 here), so entries of
// A near zero need an absolute bound of that scale, not one relative to themselves.
test::Tolerance tol_product(DType dt) { return dt == DType::f64 ? test::Tolerance{1e-10, 1e-10} : test::Tolerance{1e-4, 1e-3}; }

TEST(OpsCholesky, LowerAndUpperMatchReference) {
  for (DType dt : {DType::f32, DType::f64})
    for (int64_t n : {1, 5, 37}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " n=" << n);
      Tensor a = make_spd(n, 300 + uint64_t(n), dt);
      const Mat av = a.to_vector<double>();
      const Mat ref = naive_cholesky(av, n);
      Tensor l = cholesky(a);
      expect_triangular(l, true);
      PT_EXPECT_CLOSE(l, as_tensor(ref, n, n), tol_for(dt));
      const Mat lv = l.to_vector<double>();
      PT_EXPECT_CLOSE(as_tensor(mul(lv, lv, n, n, n, false, true), n, n), a, tol_product(dt));  // L·Lᵀ == A
      Tensor u = cholesky(a, true);
      expect_triangular(u, false);
      const Mat uv = u.to_vector<double>();
      PT_EXPECT_CLOSE(as_tensor(mul(uv, uv, n, n, n, true, false), n, n), a, tol_product(dt));  // Uᵀ·U == A
      PT_EXPECT_CLOSE(u.t(), as_tensor(ref, n, n), tol_for(dt));
    }
}

TEST(OpsCholesky, NotPositiveDefiniteNamesTheMinor) {
  // Leading minors 1 and 2 are positive, the third is negative.
  Tensor a = Tensor::from_vector<float>({4, 1, 0, 0, 1, 3, 0, 0, 0, 0, -1, 0, 0, 0, 0, 2}, {4, 4});
  try {
    cholesky(a);
    FAIL() << "expected NotPositiveDefinite";
  } catch (const NotPositiveDefinite& e) {
    EXPECT_EQ(e.minor(), 3);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("cholesky"), std::string::npos) << msg;
    EXPECT_NE(msg.find("not positive definite"), std::string::npos) << msg;
    EXPECT_NE(msg.find(a.describe()), std::string::npos) << msg;
  }
  EXPECT_THROW(cholesky(a.to(DType::f64), true), NotPositiveDefinite);
  EXPECT_THROW(cholesky(random_tensor({3, 4}, 310)), Error);               // not square
  EXPECT_THROW(cholesky(Tensor::zeros({3, 3}, DType::i64)), Error);              // dtype
  EXPECT_THROW(cholesky(random_tensor({2, 3, 3}, 311)), Error);            // rank
}

TEST(OpsCholeskyInverse, TimesMatrixIsIdentity) {
  for (DType dt : {DType::f32, DType::f64})
    for (bool upper : {false, true}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " upper=" << upper);
      const int64_t n = 29;
      Tensor a = make_spd(n, 320, dt);
      Tensor inv = cholesky_inverse(cholesky(a, upper), upper);
      EXPECT_TRUE(test::tensors_equal(inv, inv.t().contiguous()));  // both triangles, symmetric
      Mat eye(size_t(n * n), 0.0);
      for (int64_t i = 0; i < n; ++i) eye[size_t(i * n + i)] = 1.0;
      // A has eigenvalues >= n, so entries of A·A⁻¹ are O(1): an absolute bound is the right check.
      const test::Tolerance tol = dt == DType::f64 ? test::Tolerance{0, 1e-12} : test::Tolerance{0, 1e-5};
      PT_EXPECT_CLOSE(as_tensor(mul(a.to_vector<double>(), inv.to_vector<double>(), n, n, n), n, n),
                      as_tensor(eye, n, n), tol);
    }
}

TEST(OpsTriangularSolve, AllSidesTrianglesAndTransposes) {
  const int64_t n = 11, m = 6;
  for (DType dt : {DType::f32, DType::f64})
    for (bool upper : {false, true})
      for (bool left : {true, false})
        for (bool transpose : {false, true}) {
          SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " upper=" << upper << " left=" << left
                                            << " transpose=" << transpose);
          // Triangular with a dominant diagonal: well conditioned.
          Mat av = random_tensor({n, n}, 330, -1, 1, DType::f64).to_vector<double>();
          for (int64_t r = 0; r < n; ++r)
            for (int64_t c = 0; c < n; ++c) {
              if (upper ? c < r : c > r) av[size_t(r * n + c)] = 0.0;
              if (r == c) av[size_t(r * n + c)] = double(n) + std::abs(av[size_t(r * n + c)]);
            }
          Tensor a = as_tensor(av, n, n).to(dt);
          Tensor b = left ? random_tensor({n, m}, 331, -1, 1, dt) : random_tensor({m, n}, 332, -1, 1, dt);
          Tensor x = triangular_solve(a, b, upper, left, transpose);
          EXPECT_EQ(x.shape(), b.shape());
          const Mat xv = x.to_vector<double>();
          const Mat back = left ? mul(av, xv, n, n, m, transpose, false) : mul(xv, av, m, n, n, false, transpose);
          PT_EXPECT_CLOSE(as_tensor(back, b.size(0), b.size(1)), b, tol_for(dt));
        }
  Tensor a = make_spd(4, 333, DType::f32);
  EXPECT_THROW(triangular_solve(a, random_tensor({5, 2}, 334), false), Error);          // rows != n
  EXPECT_THROW(triangular_solve(a, random_tensor({2, 5}, 335), false, false), Error);   // cols != n
  EXPECT_THROW(triangular_solve(a, random_tensor({4, 2}, 336, -1, 1, DType::f64), false), Error);
}

TEST(OpsCholeskyInverse, ASingularFactorIsAnError) {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor f = cholesky(make_spd(5, 325, dt));
    f.select(0, 2).select(0, 2).fill_(0.0);
    test::expect_error([&] { cholesky_inverse(f); }, "has a zero on its diagonal (entry 3)");
  }
}

// a[r][c] = a[c][r] on the written side of a row-major n x n matrix with row stride ld, in double.
Mat naive_mirror(Mat a, int64_t n, int64_t ld, bool from_upper) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < n; ++c)
      if (from_upper ? r > c : r < c) a[size_t(r * ld + c)] = a[size_t(c * ld + r)];
  return a;
}

TEST(OpsSymmetrize, CopiesOneTriangleOntoTheOther) {
  for (DType dt : {DType::f32, DType::f64})
    for (bool from_upper : {true, false}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " from_upper=" << from_upper);
      Tensor wide = random_tensor({13, 17}, 340, -1, 1, dt);  // a 13 x 13 view with row stride 17
      const Mat expected = naive_mirror(wide.to_vector<double>(), 13, 17, from_upper);
      symmetrize_(wide.narrow(1, 0, 13), from_upper);
      EXPECT_TRUE(test::tensors_equal(wide, as_tensor(expected, 13, 17).to(dt)));
    }
  symmetrize_(Tensor::zeros({0, 0}));  // nothing to do
  test::expect_error([] { symmetrize_(random_tensor({3, 4}, 341)); }, "square");
  test::expect_error([] { symmetrize_(random_tensor({4, 4}, 342).t()); }, "unit column stride");
}

// The CUDA mirror kernel is mirror_load, a barrier, mirror_store per block (tensor/ops/linalg.cu); here the
// same steps run over every block and thread of its grid: every element of the written triangle is the
// transpose of its partner, and nothing else (the other triangle, the diagonal, the padding past column n)
// changes.
TEST(MirrorTiles, TheKernelStepsMirrorLikeTheNaiveLoop) {
  using namespace pt::cuda;
  for (int64_t n : {1, 5, 31, 32, 33, 64, 70, 97})
    for (int64_t pad : {0, 3})
      for (bool to_lower : {true, false}) {
        SCOPED_TRACE(::testing::Message() << "n=" << n << " ld=" << n + pad << " to_lower=" << to_lower);
        const int64_t ld = n + pad;
        const Mat start = random_tensor({n, ld}, 350 + uint64_t(n), -1, 1, DType::f64).to_vector<double>();
        Mat a = start;
        const unsigned tiles = mirror_tiles(n);
        for (unsigned by = 0; by < tiles; ++by)
          for (unsigned bx = 0; bx < tiles; ++bx) {
            const MirrorTile t = mirror_tile(bx, by, to_lower);
            if (!t.active) continue;
            double tile[kMirrorTile][kMirrorTile + 1] = {};
            for (int ty = 0; ty < kMirrorRows; ++ty)
              for (int tx = 0; tx < kMirrorTile; ++tx) mirror_load(a.data(), n, ld, t, tx, ty, tile);
            for (int ty = 0; ty < kMirrorRows; ++ty)
              for (int tx = 0; tx < kMirrorTile; ++tx) mirror_store(a.data(), n, ld, t, tx, ty, to_lower, tile);
          }
        EXPECT_EQ(a, naive_mirror(start, n, ld, /*from_upper=*/to_lower));
      }
  EXPECT_EQ(pt::cuda::mirror_tiles(0), 1u);  // an empty matrix still launches a valid (idle) grid
  EXPECT_EQ(pt::cuda::mirror_tiles(32), 1u);
  EXPECT_EQ(pt::cuda::mirror_tiles(33), 2u);
}

// ---- CUDA parity -------------------------------------------------------------------------------------

TEST(CudaCholesky, MatchesCpu) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  for (DType dt : {DType::f32, DType::f64})
    for (bool upper : {false, true})
      for (int64_t n : {1, 7, 33, 130}) {  // the 64-bit cuSOLVER API (the only path); 33: a partial mirror tile
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " upper=" << upper << " n=" << n);
        Tensor a = make_spd(n, 400 + uint64_t(n), dt);
        Tensor f = cholesky(a.to(Device::cuda), upper);
        EXPECT_TRUE(f.is_cuda());
        expect_triangular(f, !upper);
        // Factor entries reach ~15 at n = 130; small ones get an absolute bound on that scale.
        PT_EXPECT_CLOSE(f, cholesky(a, upper), (dt == DType::f64 ? test::kF64 : test::Tolerance{1e-4, 1e-4}));
        Tensor inv = cholesky_inverse(f, upper);
        EXPECT_TRUE(test::tensors_equal(inv, inv.t().contiguous()));
        PT_EXPECT_CLOSE(inv, cholesky_inverse(cholesky(a, upper), upper),
                        (dt == DType::f64 ? test::Tolerance{1e-10, 1e-13} : test::Tolerance{1e-4, 1e-6}));
      }
}

TEST(CudaCholesky, NotPositiveDefinite) {
  PT_SKIP_IF_NO_CUDA();
  Tensor a = Tensor::from_vector<double>({4, 1, 0, 0, 1, 3, 0, 0, 0, 0, -1, 0, 0, 0, 0, 2}, {4, 4}, Device::cuda);
  for (bool upper : {false, true}) {
    try {
      cholesky(a, upper);
      FAIL() << "expected NotPositiveDefinite";
    } catch (const NotPositiveDefinite& e) {
      EXPECT_EQ(e.minor(), 3);
      EXPECT_NE(std::string(e.what()).find("not positive definite"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(cholesky(a.to(DType::f32)), NotPositiveDefinite);
  EXPECT_THROW(cholesky(a.to(DType::f16)), Error);
  EXPECT_THROW(triangular_solve(a, random_tensor({4, 2}, 401, -1, 1, DType::f64), false), Error);  // mixed devices
}

TEST(CudaCholesky, ASingularFactorIsAnError) {
  PT_SKIP_IF_NO_CUDA();
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor f = cholesky(make_spd(5, 325, dt)).to(Device::cuda);
    f.select(0, 2).select(0, 2).fill_(0.0);
    test::expect_error([&] { cholesky_inverse(f); }, "has a zero on its diagonal (entry 3)");
    test::expect_error([&] { cholesky_inverse(f.t().contiguous(), true); }, "has a zero on its diagonal (entry 3)");
  }
}

TEST(CudaSymmetrize, MatchesCpu) {
  PT_SKIP_IF_NO_CUDA();
  for (DType dt : {DType::f32, DType::f64})
    for (int64_t n : {1, 31, 32, 33, 100, 257})
      for (bool from_upper : {true, false}) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " n=" << n << " from_upper=" << from_upper);
        Tensor cpu = random_tensor({n, n + 5}, 360 + uint64_t(n), -1, 1, dt);  // views with row stride n + 5
        Tensor gpu = cpu.to(Device::cuda);
        symmetrize_(cpu.narrow(1, 0, n), from_upper);
        symmetrize_(gpu.narrow(1, 0, n), from_upper);
        EXPECT_TRUE(test::tensors_equal(gpu.to(Device::cpu), cpu));
      }
}

TEST(CudaTriangularSolve, MatchesCpu) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  const int64_t n = 45, m = 13;
  for (DType dt : {DType::f32, DType::f64})
    for (bool upper : {false, true})
      for (bool left : {true, false})
        for (bool transpose : {false, true}) {
          SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " upper=" << upper << " left=" << left
                                            << " transpose=" << transpose);
          Tensor a = cholesky(make_spd(n, 410, dt), upper);  // a well-conditioned triangular matrix
          Tensor b = left ? random_tensor({n, m}, 411, -1, 1, dt) : random_tensor({m, n}, 412, -1, 1, dt);
          Tensor x = triangular_solve(a.to(Device::cuda), b.to(Device::cuda), upper, left, transpose);
          EXPECT_TRUE(x.is_cuda());
          PT_EXPECT_CLOSE(x, triangular_solve(a, b, upper, left, transpose), tol_for(dt));
        }
}

}  // namespace
}  // namespace pt
