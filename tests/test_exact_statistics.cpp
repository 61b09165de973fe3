// [prune] statistics_sum = exact (prune/exact_sum.h): the Hessian and Wanda's norms summed in int64 fixed point
// give the same bits for any order of the windows, any batches, any split over (simulated) ranks and any thread
// count; they agree with a double reference; windows too far apart in scale are refused; and a model pruned with
// exact statistics keeps running-mode SparseGPT's masks up to near-ties; a layer's forward is the same bits at 1 and
// 2 threads and so is SparseGPT's factorisation in a OneThreadScope. The running average's order dependence and the
// plain factorisation's thread dependence on the same data are printed (not asserted: they are what exact removes).
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <numeric>
#include <random>

#include "prune/calibration_across_ranks.h"
#include "prune/hessian.h"
#include "prune/one_thread_scope.h"
#include "prune/wanda.h"
#include "prune/window_terms.h"
#include "tensor/memory_report.h"
#include "tests/sequential_prune_fixtures.h"
#include "tests/test_util.h"

namespace pt::prune {
namespace {

using test::expect_error;

constexpr int64_t kWindows = 24, kTokens = 32, kCols = 300;  // 300 columns: two Gram blocks of 256

// Windows [kWindows, kTokens, kCols] whose scales differ (factors 1/8 .. 8), so f32 sums depend on their order.
Tensor scaled_windows(uint64_t seed) {
  Tensor x = test::random_tensor({kWindows, kTokens, kCols}, seed, -1.0, 1.0);
  float* p = x.data<float>();
  for (int64_t w = 0; w < kWindows; ++w)
    for (int64_t i = 0; i < kTokens * kCols; ++i) p[w * kTokens * kCols + i] *= float(std::ldexp(1.0, int(w % 7) - 3));
  return x;
}

// (2/n) Σ_w X_wᵀX_w in double.
std::vector<double> reference_hessian(const Tensor& x) {
  const std::vector<double> v = x.to_vector<double>();
  std::vector<double> h(size_t(kCols * kCols), 0.0);
  for (int64_t t = 0; t < kWindows * kTokens; ++t)
    for (int64_t i = 0; i < kCols; ++i)
      for (int64_t j = 0; j < kCols; ++j) h[size_t(i * kCols + j)] += v[size_t(t * kCols + i)] * v[size_t(t * kCols + j)];
  for (double& e : h) e *= 2.0 / double(kWindows);
  return h;
}

// The windows in `order`, fed in batches of the given sizes (cycled), to an accumulator of either kind.
Tensor hessian_of(const Tensor& x, const std::vector<int64_t>& order, const std::vector<int64_t>& batches, bool exact) {
  HessianAccumulator acc(kCols, Device::cpu);
  if (exact) acc.use_exact_sum();
  for (size_t at = 0, k = 0; at < order.size(); ++k) {
    const int64_t b = std::min<int64_t>(batches[k % batches.size()], int64_t(order.size() - at));
    std::vector<Tensor> rows;
    for (int64_t i = 0; i < b; ++i) rows.push_back(x.narrow(0, order[at + size_t(i)], 1));
    acc.add_batch(cat(rows, 0), b);
    at += size_t(b);
  }
  return acc.H().clone();
}

int64_t differing(const Tensor& a, const Tensor& b) {
  const auto va = a.to_vector<float>(), vb = b.to_vector<float>();
  int64_t n = 0;
  for (size_t i = 0; i < va.size(); ++i) n += std::memcmp(&va[i], &vb[i], sizeof(float)) != 0;
  return n;
}

std::vector<std::vector<int64_t>> orders(uint64_t seed, int count) {
  std::vector<int64_t> order(kWindows);
  std::iota(order.begin(), order.end(), 0);
  std::vector<std::vector<int64_t>> out{order};
  std::mt19937_64 rng(seed);
  for (int i = 1; i < count; ++i) {
    std::shuffle(order.begin(), order.end(), rng);
    out.push_back(order);
  }
  return out;
}

TEST(ExactStatistics, HessianHasTheSameBitsForAnyOrderAndBatchesAndMatchesDouble) {
  const Tensor x = scaled_windows(5);
  const std::vector<std::vector<int64_t>> batchings = {{1}, {8}, {3, 5, 2}, {7}};
  const auto ords = orders(17, 4);
  const Tensor first = hessian_of(x, ords[0], batchings[0], true);
  int64_t running_differences = 0;
  const Tensor running_first = hessian_of(x, ords[0], batchings[0], false);
  for (size_t o = 0; o < ords.size(); ++o)
    for (size_t b = 0; b < batchings.size(); ++b) {
      EXPECT_TRUE(test::same_bytes(hessian_of(x, ords[o], batchings[b], true), first)) << "order " << o << " batches " << b;
      running_differences += differing(hessian_of(x, ords[o], batchings[b], false), running_first);
    }
  std::cout << "running average: " << running_differences << " entries differ from the first order's over "
            << ords.size() * batchings.size() - 1 << " other orders/batchings (exact: 0)\n";
  const Tensor expected = Tensor::from_vector<double>(reference_hessian(x), {kCols, kCols}).to(DType::f32);
  PT_EXPECT_CLOSE(first, expected, test::kReductionF32);
  EXPECT_TRUE(test::tensors_equal(first, first.t().contiguous()));  // mirrored when read
}

TEST(ExactStatistics, SplitsOverSimulatedRanksAndThreadCountsGiveTheSameBits) {
  const Tensor x = scaled_windows(9);
  auto split_sum = [&](const std::vector<int64_t>& order, const std::vector<size_t>& cuts) {
    std::vector<ExactSum> parts;  // one per simulated rank, merged in reverse
    for (size_t c = 0; c + 1 < cuts.size(); ++c) {
      parts.emplace_back(kCols, kCols);
      for (size_t i = cuts[c]; i < cuts[c + 1]; ++i) detail::add_window_gram(parts.back(), x.select(0, order[i]).contiguous());
    }
    ExactSum total(kCols, kCols);
    for (size_t c = parts.size(); c-- > 0;) total.merge(parts[c]);
    return total.to_f32(2.0 / double(kWindows), Device::cpu);
  };
  const auto ords = orders(23, 3);
  const Tensor whole = split_sum(ords[0], {0, size_t(kWindows)});
  for (const auto& order : ords)
    for (const std::vector<size_t>& cuts : std::vector<std::vector<size_t>>{{0, 12, 24}, {0, 5, 6, 17, 24}, {0, 1, 24}})
      EXPECT_TRUE(test::same_bytes(split_sum(order, cuts), whole));
  // The same windows summed by the one-process communicator (the identity) and by other thread counts.
  ExactSum one(kCols, kCols);
  for (int64_t w = 0; w < kWindows; ++w) detail::add_window_gram(one, x.select(0, w).contiguous());
  all_reduce_exact_sum(dist::one_process(), one);
  EXPECT_TRUE(test::same_bytes(one.to_f32(2.0 / double(kWindows), Device::cpu), whole));
  const int threads = omp_get_max_threads();
  for (int t : {1, 2, 3}) {
    omp_set_num_threads(t);
    EXPECT_TRUE(test::same_bytes(hessian_of(x, ords[1], {5}, true), hessian_of(x, ords[0], {8}, true))) << t << " threads";
  }
  omp_set_num_threads(threads);
}

TEST(ExactStatistics, WandaNormsHaveTheSameBitsForAnyOrderAndMatchDouble) {
  const Tensor x = scaled_windows(13);
  auto norms_of = [&](const std::vector<int64_t>& order, int64_t batch, bool exact) {
    WandaStats s(kCols, Device::cpu);
    if (exact) s.use_exact_sum();
    for (size_t at = 0; at < order.size();) {
      const int64_t b = std::min<int64_t>(batch, int64_t(order.size() - at));
      std::vector<Tensor> rows;
      for (int64_t i = 0; i < b; ++i) rows.push_back(x.narrow(0, order[at + size_t(i)], 1));
      s.add_batch(cat(rows, 0), b);
      at += size_t(b);
    }
    return s.scaler_row.clone();
  };
  const auto ords = orders(29, 4);
  const Tensor first = norms_of(ords[0], 1, true);
  int64_t running_differences = 0;
  for (const auto& order : ords)
    for (int64_t batch : {1, 4, 7}) {
      EXPECT_TRUE(test::same_bytes(norms_of(order, batch, true), first));
      running_differences += differing(norms_of(order, batch, false), norms_of(ords[0], 1, false));
    }
  std::cout << "Wanda running mean: " << running_differences << " entries differ across orders/batchings (exact: 0)\n";
  const std::vector<double> v = x.to_vector<double>();
  std::vector<double> expected(kCols, 0.0);
  for (int64_t t = 0; t < kWindows * kTokens; ++t)
    for (int64_t j = 0; j < kCols; ++j) expected[size_t(j)] += v[size_t(t * kCols + j)] * v[size_t(t * kCols + j)];
  for (double& e : expected) e /= double(kWindows);
  PT_EXPECT_CLOSE(first, Tensor::from_vector<double>(expected, {kCols}).to(DType::f32), test::kReductionF32);
}

TEST(ExactStatistics, WindowsTooFarApartInScaleAreRefusedAndBadUseIsNamed) {
  ExactSum sum(4, 4);
  const Tensor small = test::random_tensor({8, 4}, 3, -1.0, 1.0);
  Tensor large = small.clone();
  unary_(large, large, UnaryOp::mul_scalar, std::ldexp(1.0, 16));  // squares 2^32 apart: beyond 63 - 40 bits
  detail::add_window_gram(sum, small);
  detail::add_window_gram(sum, large);
  expect_error([&] { (void)sum.to_f32(1.0, Device::cpu); }, "statistics_sum = exact");
  ExactSum nan_sum(1, 4);
  Tensor bad = small.clone();
  bad.data<float>()[5] = std::numeric_limits<float>::quiet_NaN();
  expect_error([&] { detail::add_window_square_norms(nan_sum, bad); }, "not finite");
  HessianAccumulator acc(4, Device::cpu);
  acc.use_exact_sum();
  acc.add_batch(small.reshape({1, 8, 4}), 1);
  EXPECT_EQ(acc.H().size(0), 4);
  expect_error([&] { acc.add_batch(small.reshape({1, 8, 4}), 1); }, "read already");
  expect_error([] { (void)parse_statistics_sum("fast"); }, "allowed: running, exact");
}

// Exact statistics are still SparseGPT: on a small random model the masks agree with the running average's up to
// near-ties (>= 99.9 % of entries) and the perplexity within 1e-3.
TEST(ExactStatistics, ExactSparseGptKeepsTheRunningMasksUpToNearTies) {
  using namespace sequential_fixtures;
  const OptConfig config = test_config(2);
  const Tensor ids = random_ids(kSamples, kSeqlen, config.vocab_size, 3);
  auto pruned = [&](StatisticsSum sum) {
    auto model = make_model(7);
    SequentialPruneOptions o = options(PruneMethod::sparsegpt, 0.5);
    o.statistics_sum = sum;
    prune_model(*model, ids, o);
    return model;
  };
  auto running = pruned(StatisticsSum::running), exact = pruned(StatisticsSum::exact);
  int64_t same = 0, total = 0;
  const auto lr = running->linear_layers(), le = exact->linear_layers();
  for (size_t j = 0; j < lr.size(); ++j) {
    const auto a = lr[j].second->weight_mask.to_vector<uint8_t>(), b = le[j].second->weight_mask.to_vector<uint8_t>();
    for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
    total += int64_t(a.size());
  }
  std::cout << "exact against running masks: " << total - same << " of " << total << " entries differ\n";
  EXPECT_GE(double(same), 0.999 * double(total));
  opt::PerplexityOptions po;
  po.seqlen = kSeqlen;
  po.show_progress = false;
  const std::vector<int32_t> tokens = random_ids(1, 8 * kSeqlen, config.vocab_size, 4).to_vector<int32_t>();
  const double pr = opt::evaluate_perplexity(*running, tokens, po).perplexity;
  const double pe = opt::evaluate_perplexity(*exact, tokens, po).perplexity;
  EXPECT_NEAR(pe, pr, 1e-3 * pr);
}

// What else a mask depends on, at 1 and 2 threads (why a single process's masks changed with its thread count):
// a decoder layer's forward and its Linear inputs are the same bits; OpenBLAS's potrf/potri are not (their blocking
// follows the thread count), so SparseGPT factorises in a OneThreadScope when statistics_sum = exact.
TEST(ExactStatistics, TheForwardIsThreadCountFreeAndTheFactorisationIsInOneThreadScope) {
  opt::OptConfig c = sequential_fixtures::test_config(1);
  c.hidden_size = 512, c.ffn_dim = 1024, c.num_attention_heads = 8, c.max_position_embeddings = 256;
  auto model = sequential_fixtures::make_model(3, Device::cpu, c);
  model->eval();
  autograd::NoGradGuard no_grad;
  const Tensor x = model->embed(sequential_fixtures::random_ids(3, 256, c.vocab_size, 5));
  const Tensor g = test::random_tensor({1024, 384}, 8);
  const Tensor h = matmul(g, g, /*trans_a=*/true, /*trans_b=*/false);
  const int threads = omp_get_max_threads();
  std::vector<Tensor> seen[2], out[2], plain[2], scoped[2];
  for (int t : {1, 2}) {
    omp_set_num_threads(t);
    auto& v = seen[t - 1];
    for (auto& [name, lin] : model->layer(0).linear_layers())
      lin->input_observer = [&v](const Tensor& in) { v.push_back(in.clone()); };
    out[t - 1].push_back(model->layer(0).forward(autograd::Variable(x)).data().clone());
    for (auto& [name, lin] : model->layer(0).linear_layers()) lin->input_observer = nullptr;
    plain[t - 1].push_back(cholesky_inverse(cholesky(h, true), true));
    OneThreadScope one(true);
    scoped[t - 1].push_back(cholesky_inverse(cholesky(h, true), true));
  }
  omp_set_num_threads(threads);
  ASSERT_EQ(seen[0].size(), seen[1].size());
  for (size_t i = 0; i < seen[0].size(); ++i) EXPECT_TRUE(test::same_bytes(seen[0][i], seen[1][i])) << "input " << i;
  EXPECT_TRUE(test::same_bytes(out[0][0], out[1][0]));
  EXPECT_TRUE(test::same_bytes(scoped[0][0], scoped[1][0]));
  EXPECT_EQ(omp_get_max_threads(), threads);  // the scope restored the count
  std::cout << "potrf + potri without the scope: " << differing(plain[0][0], plain[1][0]) << " of " << h.numel()
            << " entries differ between 1 and 2 threads\n";
}

}  // namespace
}  // namespace pt::prune

namespace pt::prune {
namespace {

// --dry-run's memory plan of a streamed prune stage counts the exact sums: 8 bytes per entry of the layer's
// Hessians (q/k/v, out_proj and fc1: hidden²; fc2: ffn²), and only with statistics_sum = exact.
class ExactStatisticsDryRun : public test::TempDirTest {};

TEST_F(ExactStatisticsDryRun, TheStreamedMemoryPlanCountsTheInt64Sums) {
  const std::string data = test::source_dir() + "/data";
  if (!std::filesystem::exists(data + "/opt-tokenizer")) GTEST_SKIP() << "no tokenizer under " << data;
  const int64_t hidden = 64, ffn = 256;
  ASSERT_EQ(test::wait_exit(test::spawn_process(
                {test::app_dir() + "/make_random_opt", "--out", path("model"), "--layers", "1", "--hidden", "64", "--heads",
                 "2", "--ffn", "256", "--context", "32", "--seed", "5"},
                path("make.log"))),
            0)
      << test::read_text_file(path("make.log"));
  std::ofstream(path("run.ini")) << "[run]\ndevice = cpu\noutput = " << path("out") << "\n[experiment]\narms = "
                                 << "sparsegpt:oneshot\n[model]\npreset = custom\nlayers = 1\nhidden = 64\nheads = 2\n"
                                 << "ffn = 256\ncontext = 32\nweights = " << path("model") << "\nstream = on\n[data]\n"
                                 << "dir = " << data << "\n";
  auto plan = [&](const std::string& sum) {
    const int code = test::wait_exit(test::spawn_process({test::app_dir() + "/train_prune", "--config", path("run.ini"),
                                                          "--set", "prune.statistics_sum=" + sum, "--dry-run"},
                                                         path(sum + ".log")));
    EXPECT_EQ(code, 0) << test::read_text_file(path(sum + ".log"));
    return test::read_text_file(path(sum + ".log"));
  };
  const std::string sums = "with the exact sums' " + format_bytes(8 * (3 * hidden * hidden + ffn * ffn));
  EXPECT_NE(plan("exact").find(sums), std::string::npos) << plan("exact");
  EXPECT_EQ(plan("running").find("exact sums"), std::string::npos) << plan("running");
  EXPECT_FALSE(std::filesystem::exists(path("out/results.json")));
}

}  // namespace
}  // namespace pt::prune
