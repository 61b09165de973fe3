// WikiText-2 splits as OPT token ids, the way SparseGPT builds them (train: " ".join(rows); test and valid:
// "\n\n".join(rows)), cached on disk so a run tokenises each text once (rebuilt when the text or the
// tokenizer changes; see token_cache.h).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "corpus/tokenizer.h"
#include "corpus/wikitext.h"

namespace pt::corpus {

struct WikiTextTokens {
  std::vector<int32_t> ids;
  std::string path;     // the text file that was read
  std::string note;     // e.g. "tokenized train prefix: not comparable with published numbers" (may be empty)
  std::string warning;  // the file matches no published checksum (may be empty)
  bool from_cache = false;
};

// `path` empty = default_wikitext_path(data_dir, split). cache_dir empty = no cache.
WikiTextTokens wikitext_tokens(const Gpt2Tokenizer& tokenizer, WikiTextSplit split, const std::string& data_dir,
                               const std::string& cache_dir, const std::string& path = "");

}  // namespace pt::corpus
