// Sparse forward passes: every packed form of a pruned weight (CSR, bitmap, 2:4, masked, auto) against the
// masked-dense product, on random masks at 50/70/90 % and on layers pruned by the real pruning code; the model in
// each kernel mode against the dense model (perplexity, generation); the error paths. CUDA cases compare the
// GPU kernels in f16/bf16 with an f64 CPU reference and skip cleanly without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "autograd/variable.h"
#include "nn/linear_kernel.h"
#include "opt/generate.h"
#include "opt/model.h"
#include "opt/perplexity.h"
#include "prune/pattern.h"
#include "prune/sequential.h"
#include "sparse/auto_kernel.h"
#include "sparse/bitmap.h"
#include "sparse/csr.h"
#include "sparse/plan_cache.h"
#include "sparse/two_four.h"
#include "test_sparse_linear_util.h"
#include "test_util.h"
#if PT_CUDA
#include "sparse/sparse_cuda.h"
#endif

namespace pt {
namespace {

using sparse::LinearKernel;
using test::expect_error;
using test::random_tensor;
using test::random_mask;
using test::random_two_four_mask;
using test::masked_dense_reference;
using test::relative_error;

std::shared_ptr<sparse::PackedLinearWeight> pack(LinearKernel k, const Tensor& w, const Tensor& keep, DType dtype) {
  return sparse::pack_linear_weight(k, w, keep, dtype, "test.weight");
}

const LinearKernel kUnstructuredKernels[] = {LinearKernel::masked, LinearKernel::csr, LinearKernel::bitmap};

// ---- formats ---------------------------------------------------------------------------------------------

TEST(SparseFormats, EveryFormatHoldsExactlyTheMaskedWeight) {
  for (const double sparsity : {0.0, 0.5, 0.7, 0.9, 1.0}) {
    for (const auto& [out, in] : std::vector<std::pair<int64_t, int64_t>>{{13, 37}, {8, 64}, {33, 100}}) {
      const Tensor w = random_tensor({out, in}, 11 + out);
      const Tensor keep = random_mask(out, in, sparsity, 5 + in);
      const Tensor expected = apply_mask(w, keep);
      for (const LinearKernel k : kUnstructuredKernels)
        EXPECT_TRUE(test::tensors_equal(pack(k, w, keep, DType::f32)->to_dense(), expected))
            << sparse::linear_kernel_name(k) << " at " << sparsity << " on " << out << "x" << in;
      const sparse::CsrWeight csr(w, keep, DType::f32);
      const sparse::BitmapWeight bitmap(w, keep, DType::f32);
      const int64_t kept = keep.numel() - prune::mask_pruned_count(keep);
      EXPECT_EQ(csr.nnz(), kept);
      EXPECT_EQ(bitmap.nnz(), kept);
      EXPECT_EQ(csr.stored_bytes(), (out + 1) * 4 + kept * 8);
      EXPECT_EQ(bitmap.stored_bytes(), out * ((in + 31) / 32) * 8 + kept * 4);
    }
  }
}

TEST(SparseFormats, TwoFourLayoutHoldsTheMaskedWeightAndPadsShortGroups) {
  const Tensor w = random_tensor({24, 96}, 3);
  const Tensor keep = random_two_four_mask(24, 96, 4);
  const sparse::TwoFourWeight tf(w, keep, DType::f32);
  EXPECT_TRUE(test::tensors_equal(tf.to_dense(), apply_mask(w, keep)));
  EXPECT_EQ(tf.values.shape(), (Shape{24, 48}));
  EXPECT_EQ(tf.meta.shape(), (Shape{24, 3}));
  EXPECT_EQ(tf.stored_bytes(), 24 * 48 * 4 + 24 * 3 * 4);
  // Every metadata nibble names two distinct columns in ascending order (what sparse tensor cores require).
  const Tensor meta = tf.meta.contiguous();
  for (int64_t i = 0; i < meta.numel(); ++i)
    for (int g = 0; g < 8; ++g) {
      const uint32_t nib = (uint32_t(meta.data<int32_t>()[i]) >> (4 * g)) & 0xF;
      EXPECT_LT(nib & 3, nib >> 2) << "word " << i << " group " << g;
    }
}

TEST(SparseFormats, TwoFourRejectsAMaskThatIsNot2of4) {
  const Tensor w = random_tensor({8, 32}, 1);
  std::vector<uint8_t> keep(8 * 32, 0);
  for (int64_t g = 0; g < 8 * 32 / 4; ++g) keep[size_t(4 * g)] = keep[size_t(4 * g + 1)] = 1;
  keep[size_t(5 * 32 + 8 + 2)] = 1;  // row 5, group at columns 8..11 keeps 3
  const Tensor bad = Tensor::from_vector(keep, {8, 32});
  expect_error([&] { sparse::TwoFourWeight(w, bad, DType::f32, "layers.0.fc1.weight"); },
               "layers.0.fc1.weight: the mask keeps 3 of the 4 weights in row 5, columns 8..11");
  expect_error([&] { pack(LinearKernel::two_four, w, random_mask(8, 32, 0.5, 2), DType::f32); }, "2:4");
  expect_error([&] { pack(LinearKernel::two_four, random_tensor({4, 30}, 2), Tensor(), DType::f32); },
               "not a multiple of 4");
  EXPECT_NO_THROW(pack(LinearKernel::two_four, w, Tensor::from_vector(std::vector<uint8_t>(keep.size(), 0), {8, 32}),
                       DType::f32));  // all pruned is 2:4 too
}

TEST(SparseFormats, BadArgumentsAreClearErrors) {
  const Tensor w = random_tensor({8, 16}, 1);
  expect_error([&] { pack(LinearKernel::csr, w, Tensor::ones({8, 15}, DType::u8), DType::f32); }, "mask must be u8");
  expect_error([&] { pack(LinearKernel::csr, w, Tensor::ones({8, 16}, DType::f32), DType::f32); }, "mask must be u8");
  expect_error([&] { pack(LinearKernel::bitmap, w, Tensor(), DType::bf16); }, "not supported on cpu");
  expect_error([&] { pack(LinearKernel::auto_select, w, Tensor(), DType::f32); }, "pack_fastest");
  // dense multiplies W as stored, so W must hold zeros where its mask prunes (as a pruned Linear does).
  expect_error([&] { pack(LinearKernel::dense, w, random_mask(8, 16, 0.5, 1), DType::f32); },
               "nonzero values where its mask is 0");
  expect_error([&] { sparse::parse_linear_kernel("sparse"); }, "dense|masked|csr|bitmap|2of4|auto");
  EXPECT_EQ(sparse::parse_linear_kernel("2of4"), LinearKernel::two_four);
  const auto csr = pack(LinearKernel::csr, w, random_mask(8, 16, 0.5, 1), DType::f32);
  expect_error([&] { csr->forward(random_tensor({3, 15}, 2), Tensor()); }, "input must be a float tensor [..., 16]");
  expect_error([&] { csr->forward(random_tensor({3, 16}, 2), random_tensor({7}, 3)); }, "bias must be a float [8]");
}

// ---- kernels on the CPU: equal to the masked-dense product ------------------------------------------------

TEST(SparseLinearCpu, EveryKernelEqualsTheMaskedDenseProduct) {
  for (const double sparsity : {0.5, 0.7, 0.9}) {
    for (const int64_t tokens : {1, 5, 33}) {
      const int64_t out = 40, in = 72;
      const Tensor w = random_tensor({out, in}, 100 + tokens);
      const Tensor keep = random_mask(out, in, sparsity, 200 + tokens);
      const Tensor bias = random_tensor({out}, 300 + tokens);
      const Tensor x = random_tensor({tokens, in}, 400 + tokens);
      const Tensor ref = masked_dense_reference(x, w, keep, bias);
      for (const LinearKernel k : kUnstructuredKernels) {
        const Tensor y = pack(k, w, keep, DType::f32)->forward(x, bias);
        EXPECT_EQ(y.dtype(), DType::f32);
        EXPECT_LT(relative_error(y, ref), 1e-5) << sparse::linear_kernel_name(k) << " at " << sparsity << ", "
                                                << tokens << " tokens";
      }
    }
  }
}

// The CPU kernels take tokens in blocks of 16, 8, 4 or 1 (sparse/cpu_sparse_rows.h): token counts on and around
// the block sizes, shapes whose inputs leave a partial bitmap word or 2:4 metadata word, an odd number of bitmap
// words, a long row (f32 sums over ~1000 products), without bias, in f32 and f64.
TEST(SparseLinearCpu, EveryKernelEqualsTheMaskedDenseProductAtEveryTokenBlockSize) {
  struct Shape2 { int64_t out, in; };
  for (const Shape2 s : {Shape2{37, 45}, Shape2{5, 100}, Shape2{19, 36}, Shape2{70, 2052}}) {
    for (const int64_t tokens : {1, 2, 3, 4, 5, 8, 9, 16, 17, 31, 128}) {
      if (s.in > 1000 && tokens != 17) continue;  // the long rows once, at a token count with a remainder
      const uint64_t seed = uint64_t(s.out * 1000 + s.in + tokens);
      const Tensor w = random_tensor({s.out, s.in}, seed);
      const Tensor bias = tokens % 2 ? random_tensor({s.out}, seed + 1) : Tensor();
      const Tensor x = random_tensor({tokens, s.in}, seed + 2);
      const Tensor unstructured = random_mask(s.out, s.in, tokens % 3 ? 0.5 : 0.9, seed + 3);
      const Tensor ref = masked_dense_reference(x, w, unstructured, bias);
      for (const LinearKernel k : {LinearKernel::csr, LinearKernel::bitmap}) {
        EXPECT_LT(relative_error(pack(k, w, unstructured, DType::f32)->forward(x, bias), ref), 1e-5)
            << sparse::linear_kernel_name(k) << " " << s.out << "x" << s.in << ", " << tokens << " tokens";
        EXPECT_LT(relative_error(pack(k, w.to(DType::f64), unstructured, DType::f64)->forward(x.to(DType::f64), bias),
                                 ref), 1e-12)
            << sparse::linear_kernel_name(k) << " f64 " << s.out << "x" << s.in << ", " << tokens << " tokens";
      }
      if (s.in % 4 != 0) continue;  // 2:4 needs whole groups of 4 inputs
      const Tensor two_four = random_two_four_mask(s.out, s.in, seed + 4);
      EXPECT_LT(relative_error(pack(LinearKernel::two_four, w, two_four, DType::f32)->forward(x, bias),
                               masked_dense_reference(x, w, two_four, bias)), 1e-5)
          << "2of4 " << s.out << "x" << s.in << ", " << tokens << " tokens";
    }
  }
}

TEST(SparseLinearCpu, TwoFourKernelEqualsTheMaskedDenseProduct) {
  for (const int64_t tokens : {1, 6, 40}) {
    const Tensor w = random_tensor({48, 128}, 7 + tokens);
    const Tensor keep = random_two_four_mask(48, 128, 8 + tokens);
    const Tensor bias = random_tensor({48}, 9);
    const Tensor x = random_tensor({2, tokens, 128}, 10 + tokens);  // batched input [B, T, in]
    const Tensor ref = masked_dense_reference(x, w, keep, bias);
    const Tensor y = pack(LinearKernel::two_four, w, keep, DType::f32)->forward(x, bias);
    EXPECT_EQ(y.shape(), (Shape{2, tokens, 48}));
    EXPECT_LT(relative_error(y, ref), 1e-5) << tokens << " tokens";
    EXPECT_LT(relative_error(pack(LinearKernel::two_four, w, keep, DType::f32)->forward(x, Tensor()),
                             masked_dense_reference(x, w, keep, Tensor())), 1e-5);
  }
}

TEST(SparseLinearCpu, F64ValuesMatchToF64Precision) {
  const Tensor w = random_tensor({16, 64}, 1, -1, 1, DType::f64);
  const Tensor keep = random_two_four_mask(16, 64, 2);
  const Tensor x = random_tensor({5, 64}, 3, -1, 1, DType::f64);
  const Tensor ref = masked_dense_reference(x, w, keep, Tensor());
  for (const LinearKernel k : {LinearKernel::csr, LinearKernel::bitmap, LinearKernel::two_four})
    EXPECT_LT(relative_error(pack(k, w, keep, DType::f64)->forward(x, Tensor()), ref), 1e-12)
        << sparse::linear_kernel_name(k);
}

TEST(SparseLinearCpu, AutoPicksAMeasuredCandidateAndComputesTheSameProduct) {
  const Tensor keep = random_two_four_mask(64, 128, 22);
  const Tensor w = apply_mask(random_tensor({64, 128}, 21), keep);  // as a pruned Linear stores it
  sparse::AutoKernelOptions o;
  o.prefill_tokens = 32;
  const auto a = sparse::pack_fastest(w, keep, "test.weight", o);
  ASSERT_EQ(a->timings().size(), 4u);  // dense, csr, bitmap, 2of4 all hold a 2:4 weight
  for (const auto& t : a->timings()) {
    EXPECT_GT(t.decode_seconds, 0.0);
    EXPECT_GT(t.prefill_seconds, 0.0);
  }
  for (const int64_t tokens : {1, 16, 17, 40}) {
    const Tensor x = random_tensor({tokens, 128}, 23 + tokens);
    EXPECT_LT(relative_error(a->forward(x, Tensor()), masked_dense_reference(x, w, keep, Tensor())), 1e-5);
  }
  // An unstructured mask leaves 2of4 out of the candidates instead of failing.
  const Tensor unstructured = random_mask(64, 128, 0.5, 3);
  EXPECT_EQ(sparse::pack_fastest(apply_mask(w, unstructured), unstructured, "w", o)->timings().size(), 3u);
}

// ---- real pruned layers and whole models ------------------------------------------------------------------

opt::OptConfig small_config() {
  opt::OptConfig c = opt::opt_preset("tiny");  // hidden 64, ffn 256, 4 heads, vocab 512, context 64
  c.num_hidden_layers = 2;
  return c;
}

std::unique_ptr<opt::OptForCausalLM> pruned_model(const prune::SparsityPattern& pattern, prune::PruneMethod method,
                                                  uint64_t seed) {
  auto model = std::make_unique<opt::OptForCausalLM>(small_config(), Device::cpu, seed);
  prune::SequentialPruneOptions po;
  po.method = method;
  po.pattern = pattern;
  po.show_progress = false;
  Tensor calib;
  if (method != prune::PruneMethod::magnitude) {
    const auto ids = test::learnable_token_stream(4 * 32, small_config().vocab_size, seed + 1);
    calib = Tensor::from_vector(ids, {4, 32});
  } else {
    po.measure_reconstruction = false;
  }
  prune::prune_model(*model, calib, po);
  return model;
}

TEST(SparseLinearCpu, LayersPrunedBySparseGptAndWandaRunOnEveryKernel) {
  const auto unstructured = pruned_model(prune::SparsityPattern::unstructured(0.7), prune::PruneMethod::sparsegpt, 5);
  const auto two_four = pruned_model(prune::SparsityPattern::nm(2, 4), prune::PruneMethod::wanda, 6);
  for (auto* model : {unstructured.get(), two_four.get()}) {
    const bool is_24 = model == two_four.get();
    for (auto& [name, layer] : model->linear_layers()) {
      ASSERT_TRUE(layer->has_mask()) << name;
      const Tensor& w = layer->weight.data();
      const Tensor x = random_tensor({9, w.size(1)}, 77);
      const Tensor ref = masked_dense_reference(x, w, layer->weight_mask, layer->bias.data());
      std::vector<LinearKernel> kernels(std::begin(kUnstructuredKernels), std::end(kUnstructuredKernels));
      if (is_24) kernels.push_back(LinearKernel::two_four);
      for (const LinearKernel k : kernels)
        EXPECT_LT(relative_error(pack(k, w, layer->weight_mask, DType::f32)->forward(x, layer->bias.data()), ref), 1e-5)
            << name << " " << sparse::linear_kernel_name(k);
    }
  }
}

TEST(SparseLinearCpu, PerplexityInEverySparseModeEqualsDenseMode) {
  const auto ids = test::learnable_token_stream(6 * 64, small_config().vocab_size, 9);
  opt::PerplexityOptions po;
  po.seqlen = 64;
  po.batch_size = 2;
  po.show_progress = false;
  for (const bool is_24 : {false, true}) {
    auto model = is_24 ? pruned_model(prune::SparsityPattern::nm(2, 4), prune::PruneMethod::magnitude, 10)
                       : pruned_model(prune::SparsityPattern::unstructured(0.6), prune::PruneMethod::magnitude, 11);
    const double dense = opt::evaluate_perplexity(*model, ids, po).perplexity;
    std::vector<LinearKernel> kernels = {LinearKernel::masked, LinearKernel::csr, LinearKernel::bitmap,
                                         LinearKernel::auto_select};
    if (is_24) kernels.push_back(LinearKernel::two_four);
    for (const LinearKernel k : kernels) {
      nn::LinearKernelOptions lo;
      lo.kernel = k;
      lo.auto_options.prefill_tokens = 64;
      const nn::LinearKernelReport report = nn::use_linear_kernel(model->linear_layers(), lo);
      EXPECT_EQ(report.layers.size(), model->linear_layers().size());
      for (auto& [name, layer] : model->linear_layers()) EXPECT_NE(layer->packed_weight(), nullptr) << name;
      const double sparse_ppl = opt::evaluate_perplexity(*model, ids, po).perplexity;
      EXPECT_NEAR(sparse_ppl, dense, 1e-5 * dense) << sparse::linear_kernel_name(k) << (is_24 ? " (2:4)" : "");
      // CSR pays 4 index bytes per kept f32 value: smaller than dense only above 50 % sparsity.
      if (k == LinearKernel::bitmap || k == LinearKernel::two_four || (k == LinearKernel::csr && !is_24)) {
        EXPECT_LT(report.stored_bytes, report.dense_bytes) << report.summary(sparse::linear_kernel_name(k));
      }
    }
    nn::use_linear_kernel(model->linear_layers(), {});  // dense clears every packed form
    for (auto& [name, layer] : model->linear_layers()) EXPECT_EQ(layer->packed_weight(), nullptr) << name;
    EXPECT_EQ(opt::evaluate_perplexity(*model, ids, po).perplexity, dense);
  }
}

TEST(SparseLinearCpu, GenerationWithPackedWeightsGivesTheDenseTokens) {
  auto model = pruned_model(prune::SparsityPattern::unstructured(0.5), prune::PruneMethod::magnitude, 12);
  opt::GenerationOptions go;
  go.max_new_tokens = 12;
  go.eos_token_id = -1;
  go.tokenizer_vocab_size = small_config().vocab_size;
  const std::vector<int64_t> prompt = {5, 17, 99, 3, 250, 41};
  const auto dense = opt::generate(*model, prompt, go);
  for (const LinearKernel k : {LinearKernel::csr, LinearKernel::bitmap, LinearKernel::auto_select}) {
    nn::LinearKernelOptions lo;
    lo.kernel = k;
    lo.auto_options.prefill_tokens = 8;
    nn::use_linear_kernel(model->linear_layers(), lo);
    EXPECT_EQ(opt::generate(*model, prompt, go), dense) << sparse::linear_kernel_name(k);
  }
}

TEST(SparseLinearCpu, TwoFourOnAnUnstructuredModelFailsNamingTheLayerAndLeavesTheModelDense) {
  auto model = pruned_model(prune::SparsityPattern::unstructured(0.5), prune::PruneMethod::magnitude, 13);
  nn::LinearKernelOptions lo;
  lo.kernel = LinearKernel::csr;
  nn::use_linear_kernel(model->linear_layers(), lo);
  lo.kernel = LinearKernel::two_four;
  expect_error([&] { nn::use_linear_kernel(model->linear_layers(), lo); },
               "2:4 layout of model.decoder.layers.0.self_attn.");
  for (auto& [name, layer] : model->linear_layers()) EXPECT_EQ(layer->packed_weight(), nullptr) << name;
}

TEST(SparseLinearCpu, APackedLayerRefusesToRecordAGraphAndIsDroppedWhenTheMaskChanges) {
  nn::Linear layer(32, 8, true);
  Generator gen(1);
  layer.init_normal(0.1, gen);
  layer.set_mask(random_mask(8, 32, 0.5, 2));
  nn::LinearKernelOptions lo;
  lo.kernel = LinearKernel::csr;
  nn::use_linear_kernel({{"layer", &layer}}, lo);
  const autograd::Variable x(random_tensor({3, 32}, 3), false);
  expect_error([&] { layer.forward(x); }, "packed csr weight for inference");
  {
    autograd::NoGradGuard no_grad;
    EXPECT_NO_THROW(layer.forward(x));
  }
  layer.set_mask(random_mask(8, 32, 0.7, 4));
  EXPECT_EQ(layer.packed_weight(), nullptr);
  // An unpruned layer stays dense under every kernel.
  nn::Linear dense(32, 8, false);
  EXPECT_TRUE(nn::use_linear_kernel({{"dense", &dense}}, lo).layers.empty());
  EXPECT_EQ(dense.packed_weight(), nullptr);
}

// The policy of the per-token-count plans (the CSR forward's cuSPARSE state, sparse/plan_cache.h).
TEST(SparsePlanCache, BuildsOncePerKeyAndDropsTheLeastRecentlyUsed) {
  sparse::PlanCache<int64_t, std::string> cache(2);
  int made = 0;
  auto make = [&](int64_t tokens) { return [&made, tokens] { ++made; return "plan " + std::to_string(tokens); }; };
  EXPECT_EQ(cache.get(64, make(64)), "plan 64");
  EXPECT_EQ(cache.get(64, make(64)), "plan 64");  // a hit: nothing rebuilt
  EXPECT_EQ(cache.get(1, make(1)), "plan 1");
  EXPECT_EQ(made, 2);
  EXPECT_EQ(cache.get(64, make(64)), "plan 64");  // 64 is now the most recent, 1 the least
  EXPECT_EQ(cache.get(7, make(7)), "plan 7");     // full: drops 1
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.get(64, make(64)), "plan 64");
  EXPECT_EQ(made, 3);
  EXPECT_EQ(cache.get(1, make(1)), "plan 1");  // built again
  EXPECT_EQ(made, 4);
  EXPECT_EQ(cache.builds(), 4);
  std::string& kept = cache.get(1, make(1));
  cache.get(7, make(7));
  EXPECT_EQ(kept, "plan 1");  // references stay valid while the entry lives
}

// ---- CUDA: the GPU kernels in f16/bf16 against the f64 reference ------------------------------------------

void expect_cuda_kernel_matches(LinearKernel k, DType dtype, int64_t out, int64_t in, const Tensor& keep_cpu,
                                double tol, uint64_t seed) {
  const Tensor w = random_tensor({out, in}, seed);
  const Tensor bias = random_tensor({out}, seed + 1);
  // Half-precision inputs, so the reference sees exactly the values the kernel multiplies.
  const Tensor w_h = w.to(dtype).to(DType::f32), bias_h = bias.to(dtype).to(DType::f32);
  const auto packed = pack(k, w.to(Device::cuda), keep_cpu.to(Device::cuda), dtype);
  for (const int64_t tokens : {1, 3, 8, 9, 64, 130}) {
    const Tensor x = random_tensor({tokens, in}, seed + 2 + tokens).to(dtype).to(DType::f32);
    const Tensor y = packed->forward(x.to(Device::cuda).to(dtype), bias.to(Device::cuda).to(dtype));
    EXPECT_EQ(y.dtype(), dtype);
    EXPECT_LT(relative_error(y, masked_dense_reference(x, w_h, keep_cpu, bias_h)), tol)
        << sparse::linear_kernel_name(k) << " " << dtype_name(dtype) << " " << out << "x" << in << ", " << tokens
        << " tokens";
  }
}

TEST(SparseLinearCuda, UnstructuredKernelsMatchTheReferenceInHalfPrecision) {
  PT_SKIP_IF_NO_CUDA();
  for (const double sparsity : {0.5, 0.7, 0.9})
    for (const DType dtype : {DType::f16, DType::bf16})
      for (const auto& [out, in] : std::vector<std::pair<int64_t, int64_t>>{{72, 136}, {256, 512}})
        for (const LinearKernel k : kUnstructuredKernels)
          expect_cuda_kernel_matches(k, dtype, out, in, random_mask(out, in, sparsity, out + in), 1e-2, 31);
}

TEST(SparseLinearCuda, CsrInF32MatchesToF32Precision) {
  PT_SKIP_IF_NO_CUDA();
  for (const double sparsity : {0.5, 0.9})
    expect_cuda_kernel_matches(LinearKernel::csr, DType::f32, 200, 300, random_mask(200, 300, sparsity, 4), 1e-5, 41);
}

#if PT_CUDA
// The cuSPARSE descriptors, workspace and SpMM preprocessing are made once per weight and token count: repeated
// forwards with new inputs (new pointers) reuse them and stay exact; a new token count or bias/no-bias adds one.
TEST(SparseLinearCuda, CsrPlansAreBuiltOncePerTokenCountAndReused) {
  PT_SKIP_IF_NO_CUDA();
  const int64_t out = 96, in = 160;
  const Tensor w = random_tensor({out, in}, 61), keep = random_mask(out, in, 0.6, 62), bias = random_tensor({out}, 63);
  const auto packed = pack(LinearKernel::csr, w.to(Device::cuda), keep.to(Device::cuda), DType::f32);
  const auto& csr = dynamic_cast<const sparse::CsrWeight&>(*packed);
  EXPECT_EQ(sparse::cuda_kernels::csr_spmm_plans_built(csr), 0);
  for (const int64_t tokens : {5, 64, 5, 64, 1, 5})
    for (const bool with_bias : {true, false})
      for (int call = 0; call < 2; ++call) {  // new inputs each time: the plan is re-pointed, not rebuilt
        const Tensor x = random_tensor({tokens, in}, uint64_t(70 + tokens * 4 + call * 2 + with_bias));
        const Tensor b = with_bias ? bias : Tensor();
        const Tensor y = packed->forward(x.to(Device::cuda), with_bias ? b.to(Device::cuda) : b);
        EXPECT_LT(relative_error(y, masked_dense_reference(x, w, keep, b)), 1e-5) << tokens << " tokens";
      }
  EXPECT_EQ(sparse::cuda_kernels::csr_spmm_plans_built(csr), 3 * 2);  // token counts {5, 64, 1} x {bias, none}
}
#endif

TEST(SparseLinearCuda, TwoFourKernelMatchesTheReferenceInHalfPrecision) {
  PT_SKIP_IF_NO_CUDA();
  for (const DType dtype : {DType::f16, DType::bf16})
    for (const auto& [out, in] : std::vector<std::pair<int64_t, int64_t>>{{16, 32}, {72, 160}, {256, 512}})
      expect_cuda_kernel_matches(LinearKernel::two_four, dtype, out, in, random_two_four_mask(out, in, out), 1e-2, 51);
}

TEST(SparseLinearCuda, PerplexityInEverySparseModeEqualsDenseModeOnTheGpu) {
  PT_SKIP_IF_NO_CUDA();
  const auto ids = test::learnable_token_stream(6 * 64, small_config().vocab_size, 9);
  opt::PerplexityOptions po;
  po.seqlen = 64;
  po.batch_size = 2;
  po.show_progress = false;
  auto gpu = pruned_model(prune::SparsityPattern::nm(2, 4), prune::PruneMethod::magnitude, 14);
  gpu->to(Device::cuda);
  const double dense = opt::evaluate_perplexity(*gpu, ids, po).perplexity;
  for (const LinearKernel k : {LinearKernel::masked, LinearKernel::csr, LinearKernel::bitmap, LinearKernel::two_four,
                               LinearKernel::auto_select}) {
    nn::LinearKernelOptions lo;
    lo.kernel = k;
    lo.auto_options.prefill_tokens = 128;
    nn::use_linear_kernel(gpu->linear_layers(), lo);
    // bf16 values and activations in the tensor-core kernels: equal to rounding, not bit for bit.
    EXPECT_NEAR(opt::evaluate_perplexity(*gpu, ids, po).perplexity, dense, 1e-2 * dense) << sparse::linear_kernel_name(k);
  }
}

}  // namespace
}  // namespace pt
