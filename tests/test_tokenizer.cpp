// GPT-2/OPT tokenizer against Hugging Face's slow GPT2Tokenizer (fixtures from
// tests/golden/make_tokenizer_golden.py): the whole WikiText-2 test evaluation string, targeted cases,
// decode, invalid UTF-8 and malformed tokenizer files.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unistd.h>
#include <vector>

#include "corpus/sha256.h"
#include "corpus/tokenizer.h"
#include "corpus/wikitext.h"
#include "tests/test_paths.h"

namespace fs = std::filesystem;
using pt::corpus::Error;
using pt::corpus::Gpt2Tokenizer;

namespace {

const std::string kRoot = pt::test::source_dir();
const std::string kData = kRoot + "/data";
const std::string kVocab = kData + "/opt-tokenizer/vocab.json";
const std::string kMerges = kData + "/opt-tokenizer/merges.txt";
const std::string kGolden = kRoot + "/tests/golden/tokenizer";

bool have_tokenizer_files() { return fs::exists(kVocab) && fs::exists(kMerges); }

#define SKIP_WITHOUT_DATA()                                                                              \
  do {                                                                                                   \
    if (!have_tokenizer_files())                                                                         \
      GTEST_SKIP() << "data/opt-tokenizer not found under " << kData                                     \
                   << " (link the data: ln -s /work/shared/data data)";                                  \
  } while (0)

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open golden file " + path + " (run tests/golden/make_tokenizer_golden.py)");
  return nlohmann::json::parse(in);
}

// The expected message fragments must all appear in the error.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> fragments) {
  try {
    f();
    ADD_FAILURE() << "expected pt::corpus::Error";
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const auto& frag : fragments) EXPECT_NE(msg.find(frag), std::string::npos) << "'" << frag << "' not in: " << msg;
  }
}

class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (have_tokenizer_files()) tok_ = std::make_unique<Gpt2Tokenizer>(kVocab, kMerges);
  }
  static void TearDownTestSuite() { tok_.reset(); }
  void SetUp() override { SKIP_WITHOUT_DATA(); }
  static inline std::unique_ptr<Gpt2Tokenizer> tok_;
};

TEST_F(TokenizerTest, LoadsOptFilesAndMatchesPublishedEncoding) {
  EXPECT_EQ(tok_->vocab_size(), 50265u);
  EXPECT_EQ(tok_->merges_count(), 50000u);
  EXPECT_EQ(tok_->bos_id(), 2);
  EXPECT_EQ(tok_->pad_id(), 1);
  EXPECT_EQ(tok_->token_to_id("Ġthe").value_or(-1), 5);
  EXPECT_EQ(tok_->id_to_token(50264), "<mask>");
  // facebook/opt-125m's encoding as printed by FlexFlow (data/SOURCES.md note T1).
  EXPECT_EQ(tok_->encode("Today is a beautiful day and I want"),
            (std::vector<int32_t>{2, 5625, 16, 10, 2721, 183, 8, 38, 236}));
  EXPECT_EQ(tok_->files_sha256().size(), 64u);
  std::printf("[ tokenizer ] PCRE2 JIT %s\n", tok_->jit_enabled() ? "on" : "off (interpreter)");
}

TEST_F(TokenizerTest, WikiText2TestSplitMatchesHuggingFace) {
  const std::string test_path = pt::corpus::default_wikitext_path(kData, pt::corpus::WikiTextSplit::Test);
  if (!fs::exists(test_path)) GTEST_SKIP() << "missing " << test_path;
  const auto golden = read_json(kGolden + "/wikitext2_test.json");
  const std::string text = pt::corpus::sparsegpt_eval_text(
      pt::corpus::read_wikitext_split(test_path, pt::corpus::WikiTextSplit::Test));
  ASSERT_EQ(pt::corpus::sha256_hex(text), golden["text_sha256"].get<std::string>());

  Gpt2Tokenizer fresh(kVocab, kMerges);  // cold cache, so the timing is a first encode
  auto t0 = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = fresh.encode(text);
  auto t1 = std::chrono::steady_clock::now();
  const std::vector<int32_t> again = fresh.encode(text);
  auto t2 = std::chrono::steady_clock::now();
  std::printf("[ tokenizer ] WikiText-2 test (%zu B) -> %zu ids: %.3f s cold, %.3f s warm cache (%zu words cached)\n",
              text.size(), ids.size(), std::chrono::duration<double>(t1 - t0).count(),
              std::chrono::duration<double>(t2 - t1).count(), fresh.cached_words());
  EXPECT_EQ(ids, again);

  ASSERT_EQ(ids.size(), golden["count"].get<std::size_t>());
  const auto first = golden["first_2000"].get<std::vector<int32_t>>();
  const auto last = golden["last_2000"].get<std::vector<int32_t>>();
  EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + first.size()), first);
  EXPECT_EQ(std::vector<int32_t>(ids.end() - last.size(), ids.end()), last);
  // The golden hash is over little-endian int32, which is the in-memory layout here.
  EXPECT_EQ(pt::corpus::sha256_hex(ids.data(), ids.size() * sizeof(int32_t)), golden["sha256_ids"].get<std::string>());
}

TEST_F(TokenizerTest, TargetedCasesMatchHuggingFace) {
  const auto golden = read_json(kGolden + "/cases.json");
  ASSERT_GE(golden["cases"].size(), 20u);
  for (const auto& c : golden["cases"]) {
    const std::string name = c["name"], text = c["text"], decoded = c["decoded"];
    const auto expected = c["ids"].get<std::vector<int32_t>>();
    SCOPED_TRACE("case " + name);
    const auto ids = tok_->encode(text);
    EXPECT_EQ(ids, expected);
    EXPECT_EQ(tok_->encode(text, /*add_bos=*/false), std::vector<int32_t>(expected.begin() + 1, expected.end()));
    EXPECT_EQ(tok_->decode(expected), decoded);
    // Literal "</s>" / "<pad>" become special ids, which decode skips; everything else round-trips.
    if (text.find("</s>") == std::string::npos && text.find("<pad>") == std::string::npos) {
      EXPECT_EQ(tok_->decode(ids), text);
    }
  }
}

TEST_F(TokenizerTest, DecodeReplacesBrokenUtf8LikePython) {
  const auto golden = read_json(kGolden + "/cases.json");
  ASSERT_FALSE(golden["decode_cases"].empty());
  for (const auto& c : golden["decode_cases"]) {
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok_->decode(ids), c["decoded"].get<std::string>()) << c["ids"].dump();
  }
  // Special tokens: skipped by default, kept as literal text on request.
  const std::vector<int32_t> ids{2, 102, 1, 428};
  EXPECT_EQ(tok_->decode(ids), "ab");
  EXPECT_EQ(tok_->decode(ids, /*skip_special_tokens=*/false), "</s>a<pad>b");
  expect_error([&] { tok_->decode(std::vector<int32_t>{5, -1}); }, {"-1", "not in the vocab"});
  expect_error([&] { tok_->decode(std::vector<int32_t>{50265}); }, {"50265"});
}

TEST_F(TokenizerTest, InvalidUtf8IsAnErrorNamingTheByteOffset) {
  const std::vector<std::pair<std::string, std::string>> bad{
      {std::string("abc\xff", 4), "offset 3"},               // byte that never starts UTF-8
      {std::string("ok \xc0\xaf", 5), "offset 3"},           // overlong "/"
      {std::string("x\xed\xa0\x80y", 5), "offset 1"},        // UTF-16 surrogate
      {std::string("\xf4\x90\x80\x80", 4), "offset 0"},      // above U+10FFFF
      {std::string("end \xe6\x97", 6), "offset 4"},          // cut-off 3-byte character
      {std::string("a\x80", 2), "offset 1"},                 // lone continuation byte
  };
  for (const auto& [text, where] : bad) {
    SCOPED_TRACE(where);
    expect_error([&] { tok_->encode(text); }, {"not valid UTF-8", where});
  }
  EXPECT_NO_THROW(tok_->encode("\xf0\x9f\x8d\x95 \xe6\x97\xa5"));  // valid 4- and 3-byte characters
}

TEST_F(TokenizerTest, PreTokenizerFollowsTheGpt2Pattern) {
  using V = std::vector<std::string>;
  EXPECT_EQ(tok_->pre_tokenize("a  b"), (V{"a", " ", " b"}));  // last space stays with the word
  EXPECT_EQ(tok_->pre_tokenize("I'll HE'S"), (V{"I", "'ll", " HE", "'", "S"}));  // contractions are case-sensitive
  EXPECT_EQ(tok_->pre_tokenize("x\n\n y "), (V{"x", "\n\n", " y", " "}));
  EXPECT_EQ(tok_->pre_tokenize("1984, 3.5"), (V{"1984", ",", " 3", ".", "5"}));
  EXPECT_EQ(tok_->pre_tokenize("Ζεύς"), (V{"Ζεύς"}));  // \p{L} is Unicode-aware (PCRE2_UCP)
}

// ---- malformed tokenizer files ------------------------------------------------------------------

// A small GPT-2-shaped vocab: the 256 byte symbols (ids 0..255), "</s>", "<pad>" and a few merges.
class TokenizerFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pt_tokenizer_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      char32_t cp = printable ? b : next++;
      std::string s;
      if (cp < 0x80) s += static_cast<char>(cp);
      else { s += static_cast<char>(0xC0 | (cp >> 6)); s += static_cast<char>(0x80 | (cp & 0x3F)); }
      vocab_[s] = b;
    }
    vocab_["</s>"] = 256;
    vocab_["<pad>"] = 257;
    vocab_["ab"] = 258;
    vocab_["abab"] = 259;
    vocab_["Ġab"] = 260;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& content) {
    std::ofstream(dir_ / name, std::ios::binary) << content;
    return (dir_ / name).string();
  }
  std::string vocab_file() { return write("vocab.json", vocab_.dump()); }
  std::string merges_file(const std::string& body = "a b\nab ab\nĠ ab\n") {
    return write("merges.txt", "#version: 0.2\n" + body);
  }

  fs::path dir_;
  nlohmann::json vocab_ = nlohmann::json::object();
};

TEST_F(TokenizerFilesTest, TinyVocabAppliesRanksLeftToRight) {
  Gpt2Tokenizer tok(vocab_file(), merges_file());
  EXPECT_EQ(tok.merges_count(), 3u);
  // a b -> ab (rank 0), then ab ab -> abab left to right without overlap: [abab, ab].
  EXPECT_EQ(tok.encode("ababab"), (std::vector<int32_t>{256, 259, 258}));
  EXPECT_EQ(tok.encode("x ab", false), (std::vector<int32_t>{'x', 260}));
  EXPECT_EQ(tok.decode(tok.encode("ababab x ab")), "ababab x ab");
}

TEST_F(TokenizerFilesTest, MissingFilesNameThePath) {
  const std::string merges = merges_file();
  expect_error([&] { (void)Gpt2Tokenizer((dir_ / "nope.json").string(), merges); }, {"vocab", "nope.json"});
  const std::string vocab = vocab_file();
  expect_error([&] { (void)Gpt2Tokenizer(vocab, (dir_ / "nope.txt").string()); }, {"merges", "nope.txt"});
}

TEST_F(TokenizerFilesTest, BadVocabFilesAreErrors) {
  const std::string merges = merges_file();
  expect_error([&] { (void)Gpt2Tokenizer(write("v.json", "{\"a\": 1,"), merges); }, {"v.json", "not valid JSON"});
  expect_error([&] { (void)Gpt2Tokenizer(write("v.json", "[\"a\", \"b\"]"), merges); }, {"v.json", "JSON object"});
  expect_error([&] { (void)Gpt2Tokenizer(write("v.json", "{\"a\": \"x\"}"), merges); }, {"'a'", "integer id"});
  expect_error([&] { (void)Gpt2Tokenizer(write("v.json", "{\"a\": -3}"), merges); }, {"'a'", "integer id"});
  expect_error([&] { (void)Gpt2Tokenizer(write("v.json", "{\"a\": 1.5}"), merges); }, {"'a'", "integer id"});
  auto dup = vocab_;
  dup["zz"] = 5;
  expect_error([&] { (void)Gpt2Tokenizer(write("v.json", dup.dump()), merges); }, {"id 5", "'zz'"});
  auto no_byte = vocab_;
  no_byte.erase("a");
  expect_error([&] { (void)Gpt2Tokenizer(write("v.json", no_byte.dump()), merges); }, {"byte 97"});
  auto no_eos = vocab_;
  no_eos.erase("</s>");
  expect_error([&] { (void)Gpt2Tokenizer(write("v.json", no_eos.dump()), merges); }, {"</s>"});
}

TEST_F(TokenizerFilesTest, BadMergesFilesAreErrorsNamingTheLine) {
  const std::string vocab = vocab_file();
  expect_error([&] { (void)Gpt2Tokenizer(vocab, merges_file("a b\nab ab c\n")); }, {"merges.txt", "line 3", "two symbols"});
  expect_error([&] { (void)Gpt2Tokenizer(vocab, merges_file("a b\nab\n")); }, {"line 3", "two symbols"});
  expect_error([&] { (void)Gpt2Tokenizer(vocab, merges_file("a b\n\nab ab\n")); }, {"line 3", "two symbols"});
  expect_error([&] { (void)Gpt2Tokenizer(vocab, merges_file("a b\nb c\n")); }, {"line 3", "'bc'", "not in the vocab"});
  expect_error([&] { (void)Gpt2Tokenizer(vocab, write("m.txt", "a b\nab ab\n")); }, {"m.txt", "line 1", "#version"});
  expect_error([&] { (void)Gpt2Tokenizer(vocab, write("m.txt", "")); }, {"m.txt", "empty"});
  // A last line without a newline is still a merge; CRLF endings are accepted.
  EXPECT_EQ(Gpt2Tokenizer(vocab, merges_file("a b\r\nab ab")).merges_count(), 2u);
}

}  // namespace
