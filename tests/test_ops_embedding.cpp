// embedding gather and embedding_backward scatter-add against naive loops over std::vector<double>
// (repeated ids, padding_idx, i32/i64 ids, strided views, range errors); the Cuda* suites compare CUDA
// with the CPU.
#include <string>
#include <vector>

#include "tests/test_util.h"
#if PT_CUDA
#include "tensor/cuda/cuda_check.h"
#endif

namespace pt {
namespace {

using test::expect_error;
using test::random_tensor;

Tensor naive_embedding(const Tensor& w, const Tensor& ids) {
  const auto wv = w.to_vector<double>();
  const auto iv = ids.to_vector<int64_t>();
  const int64_t c = w.size(1);
  std::vector<double> out;
  for (int64_t id : iv)
    for (int64_t j = 0; j < c; ++j) out.push_back(wv[size_t(id * c + j)]);
  Shape s = ids.shape();
  s.push_back(c);
  return Tensor::from_vector<double>(out, s);
}

Tensor naive_embedding_backward(const Tensor& g, const Tensor& ids, int64_t rows, int64_t padding_idx) {
  const auto gv = g.to_vector<double>();
  const auto iv = ids.to_vector<int64_t>();
  const int64_t c = g.size(-1);
  std::vector<double> out(size_t(rows * c), 0.0);
  for (size_t p = 0; p < iv.size(); ++p)
    if (iv[p] != padding_idx)
      for (int64_t j = 0; j < c; ++j) out[size_t(iv[p] * c + j)] += gv[p * size_t(c) + size_t(j)];
  return Tensor::from_vector<double>(out, {rows, c});
}

// Ids with repeats (and the padding row) drawn from [0, rows).
Tensor make_ids(const Shape& s, int64_t rows, uint64_t seed, DType dt) {
  std::vector<int64_t> v(size_t(shape_numel(s)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = int64_t(random_uniform01(seed, i) * double(rows));
  if (!v.empty()) v[v.size() / 2] = v[0];  // at least one repeat
  return Tensor::from_vector<int64_t>(v, s).to(dt);
}

TEST(OpsEmbedding, GatherMatchesNaive) {
  uint64_t seed = 1000;
  for (DType dt : {DType::f32, DType::f64})
    for (DType it : {DType::i32, DType::i64})
      for (const Shape& s : {Shape{5}, Shape{3, 4}, Shape{2, 3, 7}, Shape{}}) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " ids " << dtype_name(it) << shape_str(s));
        Tensor w = random_tensor({11, 6}, ++seed, -1, 1, dt);
        Tensor ids = make_ids(s, 11, ++seed, it);
        Tensor out = embedding(w, ids);
        EXPECT_EQ(out.dtype(), dt);
        EXPECT_TRUE(test::tensors_equal(out, naive_embedding(w, ids)));  // a copy: exact
      }
}

TEST(OpsEmbedding, NonContiguousWeightAndIds) {
  Tensor w = random_tensor({6, 13}, 1010).t();                       // [13, 6], column-major
  Tensor ids = make_ids({5, 4}, 13, 1011, DType::i64).t();           // [4, 5], strided
  EXPECT_TRUE(test::tensors_equal(embedding(w, ids), naive_embedding(w, ids)));
  Tensor g = random_tensor({5, 4, 6}, 1012).transpose(0, 1);         // [4, 5, 6]
  PT_EXPECT_CLOSE(embedding_backward(g, ids, 13), naive_embedding_backward(g, ids, 13, -1), test::kElementwiseF32);
}

TEST(OpsEmbedding, BackwardScatterAddsAndSkipsPadding) {
  uint64_t seed = 1020;
  for (DType dt : {DType::f32, DType::f64})
    for (DType it : {DType::i32, DType::i64})
      for (int64_t padding_idx : {int64_t(-1), int64_t(0), int64_t(3)}) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " ids " << dtype_name(it) << " pad " << padding_idx);
        Tensor ids = make_ids({4, 9}, 7, ++seed, it);  // 36 ids over 7 rows: many repeats
        Tensor g = random_tensor({4, 9, 5}, ++seed, -1, 1, dt);
        Tensor got = embedding_backward(g, ids, 7, padding_idx);
        EXPECT_EQ(got.shape(), (Shape{7, 5}));
        EXPECT_EQ(got.dtype(), dt);
        PT_EXPECT_CLOSE(got, naive_embedding_backward(g, ids, 7, padding_idx),
                        dt == DType::f64 ? test::kF64 : test::kElementwiseF32);
        if (padding_idx >= 0) {
          for (double v : got.select(0, padding_idx).to_vector<double>()) EXPECT_EQ(v, 0.0);
        }
      }
}

TEST(OpsEmbedding, RowsWithoutIdsGetZeroGradient) {
  Tensor ids = Tensor::from_vector<int64_t>({2, 2, 5}, {3});
  Tensor g = random_tensor({3, 4}, 1030);
  Tensor got = embedding_backward(g, ids, 8);
  for (int64_t r : {0, 1, 3, 4, 6, 7})
    for (double v : got.select(0, r).to_vector<double>()) EXPECT_EQ(v, 0.0) << "row " << r;
  PT_EXPECT_CLOSE(got, naive_embedding_backward(g, ids, 8, -1), test::kElementwiseF32);
}

TEST(OpsEmbedding, ErrorsNameTheOp) {
  Tensor w = random_tensor({10, 4}, 1040);
  expect_error([&] { embedding(w, Tensor::from_vector<int64_t>({1, 10, 2}, {3})); }, "embedding: id 10");
  expect_error([&] { embedding(w, Tensor::from_vector<int32_t>({-1}, {1})); }, "embedding: id -1");
  expect_error([&] { embedding(w, Tensor::zeros({3}, DType::f32)); }, "embedding");
  expect_error([&] { embedding(random_tensor({10}, 1041), Tensor::zeros({3}, DType::i64)); }, "embedding");
  Tensor ids = Tensor::from_vector<int64_t>({1, 2, 3}, {3});
  expect_error([&] { embedding_backward(random_tensor({4, 4}, 1042), ids, 10); }, "embedding_backward");
  expect_error([&] { embedding_backward(random_tensor({3, 4}, 1043), ids, 3); }, "embedding_backward: id 3");
  expect_error([&] { embedding_backward(random_tensor({3, 4}, 1044), ids, 10, 10); }, "embedding_backward: padding_idx");
}

// ---- CUDA against the CPU ------------------------------------------------------------------------

TEST(CudaEmbedding, MatchesCpu) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  uint64_t seed = 1100;
  for (DType dt : {DType::f32, DType::f16, DType::bf16, DType::f64})
    for (DType it : {DType::i32, DType::i64})
      for (const Shape& s : {Shape{7}, Shape{4, 33}, Shape{8, 512}}) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " ids " << dtype_name(it) << shape_str(s));
        const int64_t rows = 97, c = 48;
        Tensor w = random_tensor({rows, c}, ++seed, -1, 1, dt);
        Tensor ids = make_ids(s, rows, ++seed, it);
        Tensor got = embedding(w.to(Device::cuda), ids.to(Device::cuda));
        EXPECT_TRUE(got.is_cuda());
        EXPECT_TRUE(test::tensors_equal(got, naive_embedding(w, ids)));  // a gather is exact in every dtype
        Shape gs = s;
        gs.push_back(c);
        Tensor g = random_tensor(gs, ++seed, -1, 1, dt);
        const DType ref = dt == DType::f64 ? DType::f64 : DType::f32;
        const test::Tolerance tol = dt == DType::f64 ? test::kF64 : is_half(dt) ? test::kHalf : test::kReductionF32;
        for (int64_t pad : {int64_t(-1), int64_t(5)})
          PT_EXPECT_CLOSE(embedding_backward(g.to(Device::cuda), ids.to(Device::cuda), rows, pad),
                          embedding_backward(g.to(ref), ids, rows, pad), tol);
      }
}

// Ids are checked on the device and reported at the next synchronisation (here the read of the result), with
// the CPU's message; a bad id is never used: its output row is 0 and its gradient is dropped.
TEST(CudaEmbedding, OutOfRangeIdThrowsAndDeviceStaysUsable) {
  PT_SKIP_IF_NO_CUDA();
  Tensor w = random_tensor({10, 4}, 1200, -1, 1, DType::f32, Device::cuda);
  for (DType it : {DType::i64, DType::i32}) {
    Tensor bad = Tensor::from_vector<int64_t>({1, 2, 12, 3, -4}, {5}, Device::cuda).to(it);
    expect_error([&] { embedding(w, bad).to(Device::cpu); },
                 "embedding: id 12 at flat position 2 of ids " + bad.describe() + " is out of range [0, 10) for weight");
    const Tensor g = random_tensor({5, 4}, 1201, -1, 1, DType::f32, Device::cuda);
    expect_error([&] { embedding_backward(g, bad, 10).to(Device::cpu); }, "embedding_backward: id 12 at flat position 2");
  }
  Tensor ok = Tensor::from_vector<int64_t>({9, 0}, {2}, Device::cuda);
  EXPECT_TRUE(test::tensors_equal(embedding(w, ok), naive_embedding(w, ok)));
}

#if PT_CUDA
TEST(CudaEmbedding, ABadIdIsNeverReadOrWritten) {
  PT_SKIP_IF_NO_CUDA();
  if (cuda::sync_check_enabled()) GTEST_SKIP() << "PT_SYNC_CHECK=1 reports the bad id at the launch";
  test::PoisonScope poison;
  const Tensor w = random_tensor({10, 4}, 1202), g = random_tensor({5, 4}, 1203);
  const Tensor ids = Tensor::from_vector<int64_t>({3, 1000000, 3, -1, 9}, {5});
  // Everything on the device first: a copy to the device synchronises too, which would report the bad id early.
  const Tensor w_d = w.to(Device::cuda), g_d = g.to(Device::cuda), ids_d = ids.to(Device::cuda);
  const Tensor y = embedding(w_d, ids_d);
  const Tensor dw = embedding_backward(g_d, ids_d, 10);
  std::vector<double> y_host, dw_host;
  expect_error([&] { y_host = y.to(Device::cpu).to_vector<double>(); }, "embedding: id 1000000 at flat position 1");
  y_host = y.to(Device::cpu).to_vector<double>();  // reported once; the results are well defined
  dw_host = dw.to(Device::cpu).to_vector<double>();
  const std::vector<double> wv = w.to_vector<double>(), gv = g.to_vector<double>();
  for (int64_t j = 0; j < 4; ++j) {
    EXPECT_EQ(y_host[size_t(0 * 4 + j)], wv[size_t(3 * 4 + j)]);
    EXPECT_EQ(y_host[size_t(1 * 4 + j)], 0.0);  // bad ids give zero rows
    EXPECT_EQ(y_host[size_t(3 * 4 + j)], 0.0);
    EXPECT_EQ(y_host[size_t(4 * 4 + j)], wv[size_t(9 * 4 + j)]);
    EXPECT_FLOAT_EQ(float(dw_host[size_t(3 * 4 + j)]), float(gv[size_t(0 * 4 + j)] + gv[size_t(2 * 4 + j)]));
    EXPECT_EQ(dw_host[size_t(9 * 4 + j)], float(gv[size_t(4 * 4 + j)]));
    for (int64_t r : {0, 1, 2, 4, 5, 6, 7, 8}) EXPECT_EQ(dw_host[size_t(r * 4 + j)], 0.0) << r;
  }
}
#endif

TEST(CudaEmbedding, NonContiguousViewsOnDevice) {
  PT_SKIP_IF_NO_CUDA();
  test::PoisonScope poison;
  Tensor w = random_tensor({6, 13}, 1210);
  Tensor ids = make_ids({5, 4}, 13, 1211, DType::i32);
  Tensor got = embedding(w.to(Device::cuda).t(), ids.to(Device::cuda).t());
  EXPECT_TRUE(test::tensors_equal(got, naive_embedding(w.t(), ids.t())));
}

}  // namespace
}  // namespace pt
