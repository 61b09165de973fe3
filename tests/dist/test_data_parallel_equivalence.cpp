// Data parallel on 2+ ranks gives the one-process result: every rank builds the same random OPT model and data,
// runs the stage once alone (dist::one_process) and once with the MPI communicator, and compares. Perplexity
// within 1e-6 relative; pruning with identical masks, weights within rounding of the summed statistics (the same
// bytes with [prune] statistics_sum = exact), and the same bytes on every rank.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "opt/model.h"
#include "opt/perplexity.h"
#include "prune/sequential.h"
#include "tests/dist/world_fixture.h"
#include "tests/test_util.h"

namespace pt::dist::test {
namespace {

opt::OptConfig tiny_config() {
  opt::OptConfig c = opt::opt_preset("tiny");  // hidden 64, ffn 256, 4 heads, vocab 512, context 64
  c.num_hidden_layers = 2;
  return c;
}

// A random model with per-feature LayerNorm gains (inputs of different scales, as in a trained model).
std::unique_ptr<opt::OptForCausalLM> make_model(uint64_t seed) {
  auto model = std::make_unique<opt::OptForCausalLM>(tiny_config(), Device::cpu, seed);
  Generator gen(seed + 1000);
  for (auto& [name, m] : model->named_modules())
    if (auto* ln = dynamic_cast<nn::LayerNorm*>(m)) ln->weight.data() = Tensor::uniform(ln->weight.shape(), 0.1, 3.0, gen);
  return model;
}

std::vector<int32_t> random_tokens(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, int32_t(tiny_config().vocab_size - 1));
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

TEST(DataParallel, PerplexityOnSeveralRanksIsTheOneProcessPerplexity) {
  auto model = make_model(3);
  const auto tokens = random_tokens(7 * 32 + 5, 4);  // 7 windows (uneven over 2 ranks) and a dropped tail
  opt::PerplexityOptions o;
  o.seqlen = 32;
  o.batch_size = 2;
  o.show_progress = false;
  const auto alone = opt::evaluate_perplexity(*model, tokens, o);
  o.comm = &world();
  const auto together = opt::evaluate_perplexity(*model, tokens, o);
  EXPECT_EQ(together.windows, 7);
  EXPECT_EQ(together.tokens_scored, alone.tokens_scored);
  EXPECT_NEAR(together.perplexity, alone.perplexity, 1e-6 * alone.perplexity);
  EXPECT_TRUE(same_on_every_rank(Tensor::from_vector(std::vector<double>{together.mean_nll}, {1})));
  o.max_windows = 3;  // a quick estimate covers the same first windows
  o.comm = nullptr;
  const auto alone3 = opt::evaluate_perplexity(*model, tokens, o);
  o.comm = &world();
  EXPECT_NEAR(opt::evaluate_perplexity(*model, tokens, o).perplexity, alone3.perplexity, 1e-6 * alone3.perplexity);
}

struct PruneCase {
  prune::PruneMethod method;
  prune::SparsityPattern pattern;
  prune::StatisticsSum sum = prune::StatisticsSum::running;  // exact: the weights too are the same bytes
};

void PrintTo(const PruneCase& c, std::ostream* os) {
  *os << prune::prune_method_name(c.method) << " " << c.pattern.describe() << " " << prune::statistics_sum_name(c.sum);
}

class DataParallelPruning : public ::testing::TestWithParam<PruneCase> {};

TEST_P(DataParallelPruning, SeveralRanksGiveTheOneProcessMasksOnEveryRank) {
  const PruneCase& c = GetParam();
  const auto ids_vec = random_tokens(9 * 32, 5);  // 9 windows: uneven over 2 ranks
  const Tensor ids = Tensor::from_vector(ids_vec, {9, 32});
  prune::SequentialPruneOptions o;
  o.method = c.method;
  o.pattern = c.pattern;
  o.forward_batch = 2;
  o.show_progress = false;
  o.statistics_sum = c.sum;
  auto alone = make_model(6), together = make_model(6);
  const auto ra = prune::prune_model(*alone, ids, o);
  o.comm = &world();
  const auto rt = prune::prune_model(*together, ids, o);

  EXPECT_EQ(rt.nsamples, 9);
  ASSERT_EQ(rt.matrices.size(), ra.matrices.size());
  const auto la = alone->linear_layers(), lt = together->linear_layers();
  ASSERT_EQ(la.size(), lt.size());
  for (size_t j = 0; j < la.size(); ++j) {
    SCOPED_TRACE(la[j].first);
    if (!la[j].second->has_mask()) continue;  // the LM head is never pruned
    ASSERT_TRUE(lt[j].second->has_mask());
    EXPECT_TRUE(pt::test::tensors_equal(lt[j].second->weight_mask, la[j].second->weight_mask));
    PT_EXPECT_CLOSE(lt[j].second->weight.data(), la[j].second->weight.data(), (pt::test::Tolerance{1e-3, 1e-5}));
    if (c.sum == prune::StatisticsSum::exact)
      EXPECT_TRUE(pt::test::same_bytes(lt[j].second->weight.data(), la[j].second->weight.data()));
    EXPECT_TRUE(same_on_every_rank(lt[j].second->weight.data()));
    EXPECT_TRUE(same_on_every_rank(lt[j].second->weight_mask));
  }
  for (size_t m = 0; m < rt.matrices.size(); ++m) {
    EXPECT_EQ(rt.matrices[m].sparsity, ra.matrices[m].sparsity) << rt.matrices[m].name;
    if (!std::isnan(ra.matrices[m].reconstruction_error)) {
      EXPECT_NEAR(rt.matrices[m].reconstruction_error, ra.matrices[m].reconstruction_error,
                  1e-3 * ra.matrices[m].reconstruction_error + 1e-9) << rt.matrices[m].name;
    }
  }
}

// Every rank pruning every matrix itself (prune_on_every_rank) ends with the bytes that one rank per matrix and
// a broadcast give: the same summed statistics go into the same deterministic pruning on every rank.
TEST_P(DataParallelPruning, EveryRankPruningAloneGivesTheBroadcastWeightsAndMasks) {
  const PruneCase& c = GetParam();
  const Tensor ids = Tensor::from_vector(random_tokens(9 * 32, 7), {9, 32});
  prune::SequentialPruneOptions o;
  o.method = c.method;
  o.pattern = c.pattern;
  o.forward_batch = 2;
  o.show_progress = false;
  o.statistics_sum = c.sum;
  o.comm = &world();
  auto split = make_model(8), replicated = make_model(8);
  const auto rs = prune::prune_model(*split, ids, o);
  o.prune_on_every_rank = true;
  const auto rr = prune::prune_model(*replicated, ids, o);
  const auto ls = split->linear_layers(), lr = replicated->linear_layers();
  ASSERT_EQ(ls.size(), lr.size());
  int pruned = 0;
  for (size_t j = 0; j < ls.size(); ++j) {
    SCOPED_TRACE(ls[j].first);
    ASSERT_EQ(lr[j].second->has_mask(), ls[j].second->has_mask());
    if (!ls[j].second->has_mask()) continue;
    ++pruned;
    EXPECT_TRUE(pt::test::same_bytes(lr[j].second->weight_mask, ls[j].second->weight_mask));
    EXPECT_TRUE(pt::test::same_bytes(lr[j].second->weight.data(), ls[j].second->weight.data()));
    EXPECT_TRUE(same_on_every_rank(lr[j].second->weight.data()));
  }
  EXPECT_EQ(pruned, 12);  // 6 matrices in each of 2 layers
  for (size_t m = 0; m < rs.matrices.size(); ++m) EXPECT_EQ(rr.matrices[m].sparsity, rs.matrices[m].sparsity);
}

INSTANTIATE_TEST_SUITE_P(
    Methods, DataParallelPruning,
    ::testing::Values(PruneCase{prune::PruneMethod::sparsegpt, prune::SparsityPattern::unstructured(0.5)},
                      PruneCase{prune::PruneMethod::sparsegpt, prune::SparsityPattern::nm(2, 4)},
                      PruneCase{prune::PruneMethod::wanda, prune::SparsityPattern::unstructured(0.6)},
                      PruneCase{prune::PruneMethod::magnitude, prune::SparsityPattern::unstructured(0.5)},
                      PruneCase{prune::PruneMethod::sparsegpt, prune::SparsityPattern::unstructured(0.5),
                                prune::StatisticsSum::exact},
                      PruneCase{prune::PruneMethod::sparsegpt, prune::SparsityPattern::nm(2, 4), prune::StatisticsSum::exact},
                      PruneCase{prune::PruneMethod::wanda, prune::SparsityPattern::unstructured(0.6),
                                prune::StatisticsSum::exact},
                      PruneCase{prune::PruneMethod::wanda, prune::SparsityPattern::nm(2, 4), prune::StatisticsSum::exact}),
    [](const auto& info) {
      return std::string(prune::prune_method_name(info.param.method)) + (info.param.pattern.is_nm() ? "_2of4" : "") +
             (info.param.sum == prune::StatisticsSum::exact ? "_exact" : "");
    });

}  // namespace
}  // namespace pt::dist::test
