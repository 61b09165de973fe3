// On-disk cache of token ids, so a run does not re-tokenize megabytes of text every start.
//
// File layout (little-endian):
//   offset  0  char[8]  magic "PTTOKIDS"
//           8  u32      format version (kTokenCacheVersion)
//          12  u32      header size in bytes (216)
//          16  u64      number of ids
//          24  char[64] sha256 hex of the tokenizer files (Gpt2Tokenizer::files_sha256())
//          88  char[64] sha256 hex of the source text that was tokenized
//         152  char[64] sha256 hex of the id payload (catches corruption that keeps the size)
//         216  int32[count] ids
// A cache is used only when both checksums in its header equal the caller's; otherwise it is stale and
// the caller rebuilds it. Writes are atomic: a temporary file in the same folder is written, fsynced and
// renamed over the target, so a crash leaves either the old cache or the new one, never half of one.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "corpus/sha256.h"  // pt::corpus::Error

namespace pt::corpus {

inline constexpr uint32_t kTokenCacheVersion = 1;

// What the cached ids were made from; both are 64-character lowercase sha256 hex strings.
struct TokenCacheKey {
  std::string tokenizer_sha256;
  std::string text_sha256;
};

// Why load_token_cache returned nothing.
struct TokenCacheMiss {
  enum class Kind { Missing, Stale, Corrupt };
  Kind kind = Kind::Missing;
  std::string why;  // one line naming the file and the reason
};

// The cached ids, or nothing when the file is missing, stale (other tokenizer, text or format version)
// or corrupt (bad magic, truncated, trailing bytes, payload checksum mismatch); `miss` says which and why.
// Never throws for a bad file: the caller rebuilds and overwrites it.
std::optional<std::vector<int32_t>> load_token_cache(const std::string& path, const TokenCacheKey& key,
                                                     TokenCacheMiss* miss = nullptr);

// Atomically writes the cache (creating the parent folder if needed). Throws pt::corpus::Error naming the
// path and the system error when the file cannot be written, or when a key is not a sha256 hex string.
void save_token_cache(const std::string& path, const TokenCacheKey& key, std::span<const int32_t> ids);

}  // namespace pt::corpus
