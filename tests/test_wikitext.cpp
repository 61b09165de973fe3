// WikiText-2 reader (HF rows, SparseGPT strings, checksum pins) and the on-disk token cache.
// Expected digests of derived strings were computed independently in Python from the same files.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#include "corpus/sha256.h"
#include "corpus/token_cache.h"
#include "corpus/tokenizer.h"
#include "corpus/wikitext.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using namespace pt::corpus;

namespace {

const std::string kData = pt::test::source_dir() + "/data";

#define SKIP_WITHOUT(path)                                                                       \
  do {                                                                                           \
    if (!fs::exists(path))                                                                       \
      GTEST_SKIP() << "missing " << (path) << " (link the data: ln -s /work/shared/data data)";  \
  } while (0)

using pt::test::TempDirTest;  // a fresh folder per test, removed afterwards

using WikiTextTest = TempDirTest;

TEST_F(WikiTextTest, TestSplitGivesHfRowsAndTheSparseGptEvalString) {
  const std::string path = default_wikitext_path(kData, WikiTextSplit::Test);
  SKIP_WITHOUT(path);
  const WikiTextFile f = read_wikitext_split(path, WikiTextSplit::Test);
  EXPECT_EQ(f.rows.size(), kTestRowCount);
  ASSERT_NE(f.pin, nullptr);
  EXPECT_STREQ(f.pin->file, "wiki.test.raw");
  EXPECT_EQ(f.sha256, "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08");
  EXPECT_TRUE(f.warning.empty()) << f.warning;
  EXPECT_TRUE(f.note.empty()) << f.note;
  EXPECT_EQ(f.rows[0], "");                           // line 1 is " "
  EXPECT_EQ(f.rows[1], " = Robert Boulter = \n");
  const std::string text = sparsegpt_eval_text(f);
  EXPECT_EQ(text.size(), kTestEvalTextSize);
  EXPECT_EQ(sha256_hex(text), kTestEvalTextSha256);
}

TEST_F(WikiTextTest, ValidSplitMatchesItsPin) {
  const std::string path = default_wikitext_path(kData, WikiTextSplit::Valid);
  SKIP_WITHOUT(path);
  const WikiTextFile f = read_wikitext_split(path, WikiTextSplit::Valid);
  EXPECT_EQ(f.rows.size(), 3760u);
  EXPECT_TRUE(f.warning.empty()) << f.warning;
  EXPECT_EQ(sha256_hex(sparsegpt_eval_text(f)), "b44fb967f92b525731216a507d1fbc44b97446b7ef0a2b4d1a893f81f1bbc29e");
}

TEST_F(WikiTextTest, TokenizedTrainPrefixIsRecognisedAndNoted) {
  const std::string path = default_wikitext_path(kData, WikiTextSplit::Train);
  SKIP_WITHOUT(path);
  const WikiTextFile f = read_wikitext_split(path, WikiTextSplit::Train);
  EXPECT_EQ(f.rows.size(), 32375u);
  ASSERT_NE(f.pin, nullptr);
  EXPECT_TRUE(f.pin->tokenized && f.pin->partial);
  EXPECT_TRUE(f.warning.empty()) << f.warning;
  EXPECT_NE(f.note.find("not comparable"), std::string::npos) << f.note;
  const std::string text = sparsegpt_train_text(f);  // " ".join(rows)
  EXPECT_EQ(text.size(), 9498162u);
  EXPECT_EQ(sha256_hex(text), "057f0ff7d405f6182a708442ec60effde6fe8fe3a24e430321ffd0de7a22b88f");
}

TEST_F(WikiTextTest, ModifiedCopyWarnsButStillReads) {
  const std::string path = default_wikitext_path(kData, WikiTextSplit::Test);
  SKIP_WITHOUT(path);
  const fs::path copy = dir_ / "wiki.test.raw";
  fs::copy_file(path, copy);
  fs::permissions(copy, fs::perms::owner_write, fs::perm_options::add);  // the shared data is read-only
  {
    std::fstream io(copy, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(100);
    io.put('#');
  }
  const WikiTextFile f = read_wikitext_split(copy.string(), WikiTextSplit::Test);
  EXPECT_EQ(f.pin, nullptr);
  EXPECT_NE(f.warning.find("not comparable"), std::string::npos) << f.warning;
  EXPECT_NE(f.warning.find(f.sha256), std::string::npos) << f.warning;
  EXPECT_NE(f.warning.find("test split"), std::string::npos) << f.warning;
  EXPECT_EQ(f.rows.size(), kTestRowCount);
}

TEST_F(WikiTextTest, MissingFileIsAnErrorNamingThePath) {
  const std::string missing = (dir_ / "no_such.raw").string();
  try {
    read_wikitext_split(missing, WikiTextSplit::Valid);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("valid"), std::string::npos) << e.what();
  }
}

TEST_F(WikiTextTest, RowsFollowPythonLineIteration) {
  using V = std::vector<std::string>;
  // Blank means str.strip() is empty, Unicode spaces included; "\r\n" and "\r" read as "\n".
  EXPECT_EQ(hf_rows_from_text("a\n \n\nb\r\nc\rd"), (V{"a\n", "", "", "b\n", "c\n", "d"}));
  EXPECT_EQ(hf_rows_from_text("\xe3\x80\x80\t\n x \n"), (V{"", " x \n"}));
  EXPECT_EQ(hf_rows_from_text(""), V{});
  EXPECT_EQ(join_rows(V{"a\n", "", "b"}, "\n\n"), "a\n\n\n\n\nb");  // Python: "\n\n".join(...)
  EXPECT_THROW(hf_rows_from_text("ok\n\xff\n"), Error);
}

// ---- token cache ---------------------------------------------------------------------------------

using TokenCacheTest = TempDirTest;

std::vector<int32_t> random_ids(std::size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, 50264);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = dist(rng);
  return ids;
}

const TokenCacheKey kKey{sha256_hex("tokenizer files"), sha256_hex("source text")};

TEST_F(TokenCacheTest, RoundTripsAndLeavesNoTemporaryFiles) {
  const std::string path = (dir_ / "sub" / "test.ids").string();  // parent folder is created
  const auto ids = random_ids(12345, 7);
  save_token_cache(path, kKey, ids);
  TokenCacheMiss miss;
  auto loaded = load_token_cache(path, kKey, &miss);
  ASSERT_TRUE(loaded.has_value()) << miss.why;
  EXPECT_EQ(*loaded, ids);
  EXPECT_EQ(fs::file_size(path), 216u + 4u * ids.size());
  save_token_cache(path, kKey, std::vector<int32_t>{});  // overwrite; empty is a valid cache
  loaded = load_token_cache(path, kKey, &miss);
  ASSERT_TRUE(loaded.has_value()) << miss.why;
  EXPECT_TRUE(loaded->empty());
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_ / "sub")) ++files;
  EXPECT_EQ(files, 1);
}

TEST_F(TokenCacheTest, MissingAndStaleCachesReturnNothing) {
  const std::string path = (dir_ / "c.ids").string();
  TokenCacheMiss miss;
  EXPECT_FALSE(load_token_cache(path, kKey, &miss).has_value());
  EXPECT_EQ(miss.kind, TokenCacheMiss::Kind::Missing);

  save_token_cache(path, kKey, random_ids(100, 1));
  EXPECT_FALSE(load_token_cache(path, {kKey.tokenizer_sha256, sha256_hex("edited text")}, &miss).has_value());
  EXPECT_EQ(miss.kind, TokenCacheMiss::Kind::Stale);
  EXPECT_NE(miss.why.find("text"), std::string::npos) << miss.why;
  EXPECT_FALSE(load_token_cache(path, {sha256_hex("other vocab"), kKey.text_sha256}, &miss).has_value());
  EXPECT_EQ(miss.kind, TokenCacheMiss::Kind::Stale);
  EXPECT_NE(miss.why.find("tokenizer"), std::string::npos) << miss.why;
  EXPECT_TRUE(load_token_cache(path, kKey).has_value());
  EXPECT_THROW(save_token_cache(path, {"not hex", kKey.text_sha256}, random_ids(3, 1)), Error);
}

TEST_F(TokenCacheTest, TruncatedOrDamagedFilesAreCorrupt) {
  const std::string path = (dir_ / "c.ids").string();
  const auto ids = random_ids(1000, 3);
  TokenCacheMiss miss;
  auto expect_corrupt = [&](const char* what, const char* fragment) {
    SCOPED_TRACE(what);
    EXPECT_FALSE(load_token_cache(path, kKey, &miss).has_value());
    EXPECT_EQ(miss.kind, TokenCacheMiss::Kind::Corrupt);
    EXPECT_NE(miss.why.find(fragment), std::string::npos) << miss.why;
    EXPECT_NE(miss.why.find(path), std::string::npos) << miss.why;
  };
  save_token_cache(path, kKey, ids);
  fs::resize_file(path, fs::file_size(path) - 2);
  expect_corrupt("payload cut short", "truncated");

  save_token_cache(path, kKey, ids);
  fs::resize_file(path, 100);
  expect_corrupt("header cut short", "truncated");

  save_token_cache(path, kKey, ids);
  { std::ofstream(path, std::ios::app | std::ios::binary) << "xx"; }
  expect_corrupt("trailing bytes", "bytes");

  save_token_cache(path, kKey, ids);
  {
    std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(216 + 40);
    io.put('\x7f');
  }
  expect_corrupt("payload byte flipped", "checksum");

  save_token_cache(path, kKey, ids);
  {
    std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
    io.put('X');
  }
  expect_corrupt("bad magic", "magic");
}

TEST_F(TokenCacheTest, CachesTheTokenizedWikiText2TestSplit) {
  const std::string vocab = kData + "/opt-tokenizer/vocab.json", merges = kData + "/opt-tokenizer/merges.txt";
  const std::string test_path = default_wikitext_path(kData, WikiTextSplit::Test);
  SKIP_WITHOUT(vocab);
  SKIP_WITHOUT(test_path);
  const Gpt2Tokenizer tok(vocab, merges);
  const std::string text = sparsegpt_eval_text(read_wikitext_split(test_path, WikiTextSplit::Test));
  const TokenCacheKey key{tok.files_sha256(), sha256_hex(text)};
  const auto ids = tok.encode(text);
  const std::string path = (dir_ / "wikitext2_test.ids").string();
  save_token_cache(path, key, ids);
  auto loaded = load_token_cache(path, key);
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(*loaded, ids);
  // The roberta-base vocab parses to the same map but is a different file: the cache must go stale.
  const Gpt2Tokenizer other(kData + "/opt-tokenizer/roberta-base-vocab.json", merges);
  EXPECT_NE(other.files_sha256(), tok.files_sha256());
  TokenCacheMiss miss;
  EXPECT_FALSE(load_token_cache(path, {other.files_sha256(), key.text_sha256}, &miss).has_value());
  EXPECT_EQ(miss.kind, TokenCacheMiss::Kind::Stale);
}

}  // namespace
