// GPT-2 byte-level BPE with OPT's vocabulary: gives the ids Hugging Face's slow GPT2Tokenizer gives for
// facebook/opt-* (add_bos_token=True, add_prefix_space=False, bos/eos/unk "</s>", pad "<pad>").
//
// encode(text):
//   1. The text must be valid UTF-8. Invalid input throws pt::corpus::Error naming the byte offset of the
//      first bad sequence (HF never sees such input: a Python str cannot hold it, so there is nothing to
//      imitate; guessing a repair would silently change ids).
//   2. OPT's special tokens "</s>" and "<pad>" written literally in the text become their ids (2 and 1), as
//      HF's added-token splitting does; the text between them is encoded normally.
//   3. Each piece is pre-tokenised with the GPT-2 regex (PCRE2, UTF + UCP, JIT when available), each
//      pre-token's UTF-8 bytes are mapped through bytes_to_unicode, and ranked merges are applied (lowest
//      rank first, all non-overlapping occurrences left to right, repeat) - HF's GPT2Tokenizer.bpe.
//   4. With add_bos, OPT's leading </s> (id 2) is prepended.
// Known difference from HF: character classes come from PCRE2's Unicode tables (Unicode 14 for PCRE2
// 10.42), while Python's `regex` module may be newer; letters/digits added in Unicode 15+ and U+180E
// (which PCRE2 still counts as \s) can pre-tokenise differently. WikiText-2 contains none of them.
//
// decode(ids): concatenates the tokens' bytes and turns invalid UTF-8 into U+FFFD per maximal subpart, as
// Python's bytes.decode("utf-8", errors="replace") does. Special tokens (</s>, <pad>) are skipped by
// default, so decode(encode(x)) == x; with skip_special_tokens=false they appear as their literal text with
// no spaces added (HF with spaces_between_special_tokens=False). No clean_up_tokenization_spaces.
//
// Thread safety: encode/decode may be called from several threads (the per-word cache is locked).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "corpus/sha256.h"  // pt::corpus::Error

namespace pt::corpus {

// One UTF-8 character read at `pos`: its code point, its length in bytes, and whether it is well formed
// (strict: no overlongs, surrogates or code points above U+10FFFF). For an ill-formed sequence `len` is
// the length of its maximal subpart (>= 1), the unit Python replaces by one U+FFFD.
struct Utf8Char {
  char32_t cp = 0;
  std::size_t len = 1;
  bool valid = false;
};
Utf8Char next_utf8_char(std::string_view s, std::size_t pos);
// Byte offset of the first ill-formed sequence, or nothing when `s` is valid UTF-8.
std::optional<std::size_t> find_invalid_utf8(std::string_view s);

class Gpt2Tokenizer {
 public:
  // Loads vocab.json (a JSON object token -> id) and merges.txt ("#version" header line, then one
  // "left right" pair per line, rank = line index after the header). Throws pt::corpus::Error with a
  // one-line message naming the file (and line) on: missing/unreadable file, malformed JSON, a vocab
  // that is not a string -> non-negative int map, two tokens sharing an id, a vocab lacking one of the
  // 256 byte symbols or "</s>", a merges file without its header line, a merges line without exactly two
  // symbols, or a merge whose result is not in the vocab. A merge whose left or right symbol is not in
  // the vocab can never fire (HF gives the same ids) and is skipped.
  Gpt2Tokenizer(const std::string& vocab_path, const std::string& merges_path);
  ~Gpt2Tokenizer();
  Gpt2Tokenizer(Gpt2Tokenizer&&) noexcept;
  Gpt2Tokenizer& operator=(Gpt2Tokenizer&&) noexcept;

  std::vector<int32_t> encode(std::string_view text, bool add_bos = true) const;
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = true) const;

  // The regex pre-tokens of `text` (no special-token splitting, no BPE); for tests and debugging.
  std::vector<std::string> pre_tokenize(std::string_view text) const;

  int32_t bos_id() const;                    // id of "</s>" (2 for OPT)
  int32_t pad_id() const;                    // id of "<pad>" (1 for OPT), -1 when the vocab has none
  std::size_t vocab_size() const;            // number of entries in vocab.json
  std::size_t merges_count() const;          // number of merge lines after the header
  std::optional<int32_t> token_to_id(std::string_view token) const;  // byte-alphabet spelling, e.g. "Ġthe"
  const std::string& id_to_token(int32_t id) const;                  // throws on an unknown id

  // sha256 over both files' sha256 hex digests ("<vocab>\n<merges>\n"): identifies the tokenizer in caches.
  const std::string& files_sha256() const;
  std::size_t cached_words() const;          // entries in the per-word BPE cache
  bool jit_enabled() const;                  // whether PCRE2 JIT compiled the pattern

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pt::corpus
