// Calibration windows: seeded, deterministic, exact slices of the stream, starts uniform on [0, L - seqlen - 1];
// window files round-trip in both formats and every defect of a file is an error naming it.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "corpus/tokenizer.h"
#include "corpus/wikitext.h"
#include "nn/safetensors.h"
#include "opt/config.h"
#include "prune/calibration.h"
#include "tests/test_util.h"

namespace pt::prune {
namespace {

namespace fs = std::filesystem;
using test::expect_error;

std::vector<int32_t> random_stream(int64_t n, int32_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, vocab - 1);
  std::vector<int32_t> s(static_cast<size_t>(n));
  for (auto& t : s) t = dist(rng);
  return s;
}

// floor(bits * range / 2^64) with 32-bit limbs (independent of the library's 128-bit multiply).
int64_t expected_start(uint64_t bits, uint64_t range) {
  const uint64_t lo = bits & 0xffffffffu, hi = bits >> 32;  // range < 2^32 in these tests
  const uint64_t lo_prod = lo * range, hi_prod = hi * range;
  return int64_t((hi_prod + (lo_prod >> 32)) >> 32);
}

TEST(Calibration, WindowsAreExactSlicesAtSeededUniformStarts) {
  const std::vector<int32_t> stream = random_stream(5000, 50272, 11);
  const int64_t n = 64, T = 100;
  const Tensor a = sample_calibration_windows(stream, n, T, 7);
  ASSERT_EQ(a.dtype(), DType::i32);
  ASSERT_EQ(a.shape(), (Shape{n, T}));
  const std::vector<int64_t> starts = calibration_window_starts(int64_t(stream.size()), n, T, 7);
  const auto ids = a.to_vector<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s = starts[size_t(i)];
    EXPECT_EQ(s, expected_start(random_bits(7, uint64_t(i)), uint64_t(stream.size()) - T)) << "window " << i;
    ASSERT_GE(s, 0);
    ASSERT_LE(s, int64_t(stream.size()) - T - 1);
    for (int64_t t = 0; t < T; ++t) ASSERT_EQ(ids[size_t(i * T + t)], stream[size_t(s + t)]) << i << "," << t;
  }
  // Same seed: same windows; another seed: other windows; a smaller draw is a prefix of a larger one.
  EXPECT_TRUE(test::tensors_equal(sample_calibration_windows(stream, n, T, 7), a));
  const auto other = calibration_window_starts(int64_t(stream.size()), n, T, 8);
  int64_t same = 0;
  for (int64_t i = 0; i < n; ++i) same += other[size_t(i)] == starts[size_t(i)];
  EXPECT_LE(same, 2);
  EXPECT_TRUE(test::tensors_equal(sample_calibration_windows(stream, 10, T, 7), a.narrow(0, 0, 10)));
}

TEST(Calibration, StartsCoverTheWholeRangeUniformly) {
  // L - seqlen = 10 possible starts (0..9, like random.randint(0, L - seqlen - 1)); 20000 draws.
  const int64_t L = 42, T = 32, n = 20000;
  const auto starts = calibration_window_starts(L, n, T, 3);
  std::vector<int64_t> counts(10, 0);
  for (int64_t s : starts) {
    ASSERT_GE(s, 0);
    ASSERT_LT(s, 10);
    ++counts[size_t(s)];
  }
  double chi2 = 0;
  for (int64_t c : counts) chi2 += (double(c) - 2000.0) * (double(c) - 2000.0) / 2000.0;
  EXPECT_LT(chi2, 27.9) << "chi-square with 9 degrees of freedom (p = 0.001)";
  // The last possible window ends exactly at the stream's last token but one.
  EXPECT_EQ(calibration_window_starts(T + 1, 5, T, 9), std::vector<int64_t>(5, 0));
}

TEST(Calibration, BadArgumentsAreErrors) {
  const std::vector<int32_t> stream = random_stream(100, 512, 1);
  expect_error([&] { sample_calibration_windows(stream, 0, 10, 0); }, "nsamples 0");
  expect_error([&] { sample_calibration_windows(stream, 4, 0, 0); }, "seqlen 0");
  expect_error([&] { sample_calibration_windows(stream, 4, 100, 0); }, "100 tokens is too short for windows of 100");
  // The run-level entry point names the text the stream came from.
  CalibrationOptions o;
  o.seqlen = 64;
  o.source = "data/short.txt";
  expect_error([&] { calibration_windows(std::vector<int32_t>(64, 1), opt::opt_preset("tiny"), o); },
               "the text data/short.txt gives 64 tokens, too few for calibration windows of 64");
}

TEST(Calibration, RunOptionsResolveAgainstTheModel) {
  const opt::OptConfig tiny = opt::opt_preset("tiny");  // context 64, vocab 512
  const std::vector<int32_t> stream = random_stream(3000, 512, 2);
  CalibrationOptions o;
  o.nsamples = 5;
  o.seed = 4;
  const Tensor ids = calibration_windows(stream, tiny, o);
  EXPECT_EQ(ids.shape(), (Shape{5, 64}));  // seqlen 0 = the model's context
  EXPECT_TRUE(test::tensors_equal(ids, sample_calibration_windows(stream, 5, 64, 4)));
  o.seqlen = 65;
  expect_error([&] { calibration_windows(stream, tiny, o); }, "seqlen 65 is longer than the context 64");
}

using CalibrationFileTest = test::TempDirTest;

TEST_F(CalibrationFileTest, BothFormatsRoundTrip) {
  const std::vector<int32_t> stream = random_stream(4000, 50272, 5);
  const Tensor ids = sample_calibration_windows(stream, 16, 48, 21);
  for (const std::string name : {"calib.safetensors", "calib.txt", "calib"}) {
    write_calibration_windows(path(name), ids, {{"seed", "21"}, {"source", "wiki.train"}});
    const Tensor back = read_calibration_windows(path(name), 50272);
    EXPECT_TRUE(test::same_bytes(back, ids)) << name;
    EXPECT_FALSE(fs::exists(path(name) + ".tmp")) << name;
  }
  nn::SafetensorsFile f(path("calib.safetensors"));
  EXPECT_EQ(f.metadata().at("seed"), "21");
  // i64 ids (and any device) are written as i32; the text format keeps the metadata as comments.
  write_calibration_windows(path("wide.safetensors"), ids.to(DType::i64));
  EXPECT_TRUE(test::same_bytes(read_calibration_windows(path("wide.safetensors"), 50272), ids));
  std::ifstream txt(path("calib.txt"));
  std::string first, second;
  std::getline(txt, first);
  std::getline(txt, second);
  EXPECT_EQ(first, "# calibration windows: 16 x 48 token ids, one window per line");
  EXPECT_EQ(second, "# seed: 21");
}

TEST_F(CalibrationFileTest, HandWrittenTextAndI64SafetensorsAreRead) {
  std::ofstream(path("hand.txt")) << "# comment\n\n 3 4\t5 \r\n6 7 8\n";
  EXPECT_TRUE(test::tensors_equal(read_calibration_windows(path("hand.txt"), 9),
                                  Tensor::from_vector(std::vector<int32_t>{3, 4, 5, 6, 7, 8}, {2, 3})));
  nn::write_safetensors(path("i64.safetensors"),
                        {{"input_ids", Tensor::from_vector(std::vector<int64_t>{1, 2, 3, 4}, {2, 2})}});
  EXPECT_TRUE(test::tensors_equal(read_calibration_windows(path("i64.safetensors"), 5),
                                  Tensor::from_vector(std::vector<int32_t>{1, 2, 3, 4}, {2, 2})));
}

TEST_F(CalibrationFileTest, BadFilesAreErrorsNamingTheFile) {
  const std::string missing_st = path("missing.safetensors"), missing_txt = path("missing.txt");
  expect_error([&] { read_calibration_windows(missing_st, 512); }, missing_st);
  expect_error([&] { read_calibration_windows(missing_txt, 512); }, missing_txt);
  expect_error([&] { read_calibration_windows(missing_txt, 0); }, "vocab_size 0");

  // Safetensors: wrong name, wrong dtype, wrong rank, ids outside the vocabulary, truncated.
  const Tensor good = Tensor::from_vector(std::vector<int32_t>{1, 2, 3, 4, 5, 6}, {2, 3});
  nn::write_safetensors(path("name.safetensors"), {{"ids", good}});
  expect_error([&] { read_calibration_windows(path("name.safetensors"), 512); }, "no tensor \"input_ids\"");
  nn::write_safetensors(path("float.safetensors"), {{"input_ids", good.to(DType::f32)}});
  expect_error([&] { read_calibration_windows(path("float.safetensors"), 512); }, "is F32");
  nn::write_safetensors(path("flat.safetensors"), {{"input_ids", good.reshape({6})}});
  expect_error([&] { read_calibration_windows(path("flat.safetensors"), 512); }, "has shape [6]");
  nn::write_safetensors(path("vocab.safetensors"), {{"input_ids", good}});
  expect_error([&] { read_calibration_windows(path("vocab.safetensors"), 6); },
               "window 1, position 2 holds id 6, outside the vocabulary [0, 6)");
  nn::write_safetensors(path("neg.safetensors"),
                        {{"input_ids", Tensor::from_vector(std::vector<int32_t>{1, -3}, {1, 2})}});
  expect_error([&] { read_calibration_windows(path("neg.safetensors"), 6); }, "holds id -3");
  write_calibration_windows(path("cut.safetensors"), good);
  fs::resize_file(path("cut.safetensors"), fs::file_size(path("cut.safetensors")) - 5);
  expect_error([&] { read_calibration_windows(path("cut.safetensors"), 512); }, path("cut.safetensors"));

  // Text: ragged rows, a truncated last line, a word that is not an id, ids out of range, no windows.
  std::ofstream(path("ragged.txt")) << "1 2 3\n4 5\n";
  expect_error([&] { read_calibration_windows(path("ragged.txt"), 512); },
               path("ragged.txt") + " line 2 has 2 ids but line 1 has 3");
  write_calibration_windows(path("cut.txt"), good);
  fs::resize_file(path("cut.txt"), fs::file_size(path("cut.txt")) - 3);  // "...4 5 6\n" -> "...4 5"
  expect_error([&] { read_calibration_windows(path("cut.txt"), 512); }, "line 3 has 2 ids but line 2 has 3");
  std::ofstream(path("word.txt")) << "1 2 x3\n";
  expect_error([&] { read_calibration_windows(path("word.txt"), 512); },
               path("word.txt") + " line 1: \"x3\" is not a token id");
  std::ofstream(path("big.txt")) << "1 2\n3 512\n";
  expect_error([&] { read_calibration_windows(path("big.txt"), 512); },
               path("big.txt") + " line 2: id 512 is outside the vocabulary [0, 512)");
  std::ofstream(path("neg.txt")) << "1 -2\n";
  expect_error([&] { read_calibration_windows(path("neg.txt"), 512); }, "id -2 is outside the vocabulary");
  std::ofstream(path("empty.txt")) << "# nothing\n\n";
  expect_error([&] { read_calibration_windows(path("empty.txt"), 512); }, path("empty.txt") + " holds no windows");

  // Writing: bad tensors, and a windows file longer than the model's context.
  expect_error([&] { write_calibration_windows(path("x.txt"), good.to(DType::f32)); }, "must be a non-empty i32/i64");
  expect_error([&] { write_calibration_windows(path("x.txt"), good.reshape({6})); }, "[nsamples, seqlen]");
  expect_error([&] { write_calibration_windows(path("no/such/dir/x.txt"), good); }, "no/such/dir/x.txt");
  CalibrationOptions o;
  std::ofstream long_file(path("long.txt"));
  for (int i = 0; i < 65; ++i) long_file << i << " ";
  long_file.close();
  o.windows_file = path("long.txt");
  expect_error([&] { calibration_windows({}, opt::opt_preset("tiny"), o); },
               "windows of 65 tokens are longer than the context 64");
}

// Real data: windows of OPT token ids from the WikiText-2 train text (skipped without the data folder).
TEST(Calibration, WikiText2TrainWindowsAreSlicesOfTheTokenizedText) {
  const std::string data = pt::test::source_dir() + "/data";
  const std::string train = corpus::default_wikitext_path(data, corpus::WikiTextSplit::Train);
  if (!fs::exists(train) || !fs::exists(data + "/opt-tokenizer/vocab.json"))
    GTEST_SKIP() << "missing " << train << " or the OPT tokenizer (link the data: ln -s /work/shared/data data)";
  corpus::Gpt2Tokenizer tok(data + "/opt-tokenizer/vocab.json", data + "/opt-tokenizer/merges.txt");
  corpus::WikiTextFile file = corpus::read_wikitext_split(train, corpus::WikiTextSplit::Train);
  file.rows.resize(std::min<size_t>(file.rows.size(), 2000));  // a prefix keeps the test fast
  const std::vector<int32_t> stream = tok.encode(corpus::sparsegpt_train_text(file));
  ASSERT_EQ(stream.front(), 2);  // OPT's BOS, as HF's tokenizer(...) adds it
  const Tensor ids = sample_calibration_windows(stream, 128, 64, 0);
  const auto starts = calibration_window_starts(int64_t(stream.size()), 128, 64, 0);
  const auto v = ids.to_vector<int32_t>();
  std::set<int64_t> distinct(starts.begin(), starts.end());
  EXPECT_GT(distinct.size(), 120u);
  for (int64_t i = 0; i < 128; ++i)
    ASSERT_TRUE(std::equal(v.begin() + i * 64, v.begin() + (i + 1) * 64, stream.begin() + starts[size_t(i)]));
}

}  // namespace
}  // namespace pt::prune
