// WikiText-2 split files -> Hugging Face rows -> the strings SparseGPT tokenizes.
//
// HF's wikitext-2-raw-v1 rows come from iterating the raw file's lines (Python text mode, so "\r\n" and
// "\r" read as "\n"): row = line (with its "\n") if line.strip() else "" (data/SOURCES.md note W1).
// SparseGPT/GPTQ then evaluate on "\n\n".join(test rows) and calibrate/train on " ".join(train rows).
//
// Each file's sha256 is compared with the published pins of its split. A mismatch is not an error (users
// may have their own copy) but the returned `warning` says the numbers are then not comparable; callers
// print it. The train split may be the raw file or the tokenized prefix staged here (note W4); using the
// latter also sets `note`, which should be reported next to any result made with it.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "corpus/sha256.h"  // pt::corpus::Error

namespace pt::corpus {

enum class WikiTextSplit { Train, Valid, Test };
const char* split_name(WikiTextSplit split);  // "train", "valid", "test"

// A published (size, sha256) for a file that a split may be read from.
struct PublishedPin {
  const char* file;    // the file's usual name
  uint64_t size;       // bytes
  const char* sha256;  // lowercase hex
  bool tokenized;      // the wikitext-2-v1 "tokens" variant (rare words are "<unk>")
  bool partial;        // a prefix of the split, not all of it
};
std::span<const PublishedPin> published_pins(WikiTextSplit split);

// The SparseGPT evaluation string of the test split: "\n\n".join(rows) of wiki.test.raw.
inline constexpr uint64_t kTestEvalTextSize = 1296370;
inline constexpr const char* kTestEvalTextSha256 = "696cca6b65a171b0a358a4be6732cdfdf2dd6164a32e20fd70e3c13fc4dfae83";
inline constexpr std::size_t kTestRowCount = 4358;

struct WikiTextFile {
  std::string path;
  WikiTextSplit split = WikiTextSplit::Test;
  uint64_t size = 0;               // bytes in the file
  std::string sha256;              // of the file's bytes
  const PublishedPin* pin = nullptr;  // the pin the file matches, or null
  std::string warning;             // non-empty when the file matches no published pin of its split
  std::string note;                // non-empty when the file is a tokenized or partial train text
  std::vector<std::string> rows;   // Hugging Face rows, in file order
};

// Reads `path` as the given split. Throws pt::corpus::Error naming the path when the file is missing or
// unreadable, or is not valid UTF-8 (Python could not read it either).
WikiTextFile read_wikitext_split(const std::string& path, WikiTextSplit split);

// Where the files live under the project's data/ link: test and valid raw files, and the tokenized
// train prefix (the raw train file is not available on the project's machines; pass its path instead).
std::string default_wikitext_path(const std::string& data_dir, WikiTextSplit split);

// HF rows of a file's text (rule above). Throws Error on invalid UTF-8, naming the byte offset.
std::vector<std::string> hf_rows_from_text(std::string_view text);
std::string join_rows(const std::vector<std::string>& rows, std::string_view separator);

std::string sparsegpt_eval_text(const WikiTextFile& file);   // "\n\n".join(rows): test (and valid)
std::string sparsegpt_train_text(const WikiTextFile& file);  // " ".join(rows): train

}  // namespace pt::corpus
