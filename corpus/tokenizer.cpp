#include "corpus/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

namespace pt::corpus {

namespace {

// GPT-2's pre-tokenisation pattern, verbatim from HF tokenization_gpt2.py.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// The per-word cache is cleared past this size so adversarial input cannot grow memory without bound.
constexpr std::size_t kMaxCachedWords = 1u << 20;
constexpr uint64_t kMaxTokenId = 1u << 24;

std::string read_whole_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(std::string("tokenizer: cannot open ") + what + " file '" + path + "' (does it exist?)");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(std::string("tokenizer: read error on ") + what + " file '" + path + "'");
  return ss.str();
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes (in increasing
// order) to U+0100, U+0101, ...; so every byte gets a visible, non-whitespace character.
std::array<char32_t, 256> bytes_to_unicode() {
  std::array<char32_t, 256> map{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    map[b] = printable ? static_cast<char32_t>(b) : next++;
  }
  return map;
}

uint64_t pair_key(int32_t a, int32_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }

struct Merge {
  int32_t rank;
  int32_t result;
};

// Transparent hashing so the cache can be probed with a string_view without allocating.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

}  // namespace

Utf8Char next_utf8_char(std::string_view s, std::size_t pos) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  unsigned char b0 = byte(pos);
  if (b0 < 0x80) return {b0, 1, true};
  std::size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Unicode Table 3-7)
  char32_t cp;
  if (b0 >= 0xC2 && b0 <= 0xDF) { need = 1; cp = b0 & 0x1F; }
  else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2; cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3; cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return {0, 1, false};
  }
  for (std::size_t k = 1; k <= need; ++k) {
    if (pos + k >= s.size()) return {0, k, false};
    unsigned char b = byte(pos + k);
    unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return {0, k, false};  // maximal subpart ends before this byte
    cp = (cp << 6) | (b & 0x3F);
  }
  return {cp, need + 1, true};
}

std::optional<std::size_t> find_invalid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) { ++i; continue; }
    Utf8Char c = next_utf8_char(s, i);
    if (!c.valid) return i;
    i += c.len;
  }
  return std::nullopt;
}

struct Gpt2Tokenizer::Impl {
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> vocab;  // byte-alphabet token -> id
  std::vector<std::string> id_to_token;   // "" where no token has that id
  std::vector<std::string> id_to_bytes;   // the raw bytes a token stands for
  std::vector<bool> id_known;
  std::array<int32_t, 256> byte_id{};     // id of each single-byte symbol
  std::unordered_map<uint64_t, Merge> merges;  // (left id, right id) -> rank and merged id
  std::size_t merge_lines = 0;
  int32_t bos = -1, pad = -1;
  std::string files_sha;

  pcre2_code* re = nullptr;
  bool jit = false;

  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache;

  ~Impl() { pcre2_code_free(re); }

  void load_vocab(const std::string& path, const std::string& text);
  void load_merges(const std::string& path, const std::string& text);
  void compile_pattern();
  void bpe(std::string_view word, std::vector<int32_t>& out) const;
  void encode_plain(std::string_view piece, pcre2_match_data* md, std::vector<int32_t>& out) const;
  template <class F> void for_each_pre_token(std::string_view piece, pcre2_match_data* md, F&& f) const;
};

void Gpt2Tokenizer::Impl::load_vocab(const std::string& path, const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error("tokenizer: vocab file '" + path + "' is not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw Error("tokenizer: vocab file '" + path + "' must be a JSON object mapping token -> id");
  for (const auto& [token, value] : j.items()) {
    // JSON parses non-negative integers as "unsigned"; the cap keeps a typo from allocating gigabytes.
    if (!value.is_number_unsigned() || value.get<uint64_t>() >= kMaxTokenId)
      throw Error("tokenizer: vocab file '" + path + "': token '" + token + "' maps to " +
                  (value.is_primitive() ? value.dump() : std::string("a JSON ") + value.type_name()) +
                  ", expected an integer id in [0, " + std::to_string(kMaxTokenId) + ")");
    auto id = static_cast<int32_t>(value.get<uint64_t>());
    if (static_cast<std::size_t>(id) >= id_to_token.size()) {
      id_to_token.resize(id + 1);
      id_known.resize(id + 1, false);
    }
    if (id_known[id])
      throw Error("tokenizer: vocab file '" + path + "': id " + std::to_string(id) + " is used by both '" +
                  id_to_token[id] + "' and '" + token + "'");
    id_known[id] = true;
    id_to_token[id] = token;
    vocab.emplace(token, id);
  }
  // Every byte must have its single-character symbol, or some input could not be encoded.
  auto b2u = bytes_to_unicode();
  std::unordered_map<char32_t, unsigned char> u2b;
  for (int b = 0; b < 256; ++b) {
    std::string sym;
    append_utf8(sym, b2u[b]);
    auto it = vocab.find(sym);
    if (it == vocab.end())
      throw Error("tokenizer: vocab file '" + path + "' lacks the symbol for byte " + std::to_string(b) +
                  " ('" + sym + "'): not a GPT-2 byte-level vocabulary");
    byte_id[b] = it->second;
    u2b[b2u[b]] = static_cast<unsigned char>(b);
  }
  // Precompute each token's bytes for decode. A character outside the byte alphabet (not in GPT-2/OPT
  // files) keeps its UTF-8 spelling rather than failing the whole load.
  id_to_bytes.resize(id_to_token.size());
  for (std::size_t id = 0; id < id_to_token.size(); ++id) {
    const std::string& tok = id_to_token[id];
    for (std::size_t i = 0; i < tok.size();) {
      Utf8Char c = next_utf8_char(tok, i);
      auto it = c.valid ? u2b.find(c.cp) : u2b.end();
      if (it != u2b.end()) id_to_bytes[id] += static_cast<char>(it->second);
      else id_to_bytes[id].append(tok, i, c.len);
      i += c.len;
    }
  }
  auto eos = vocab.find("</s>");
  if (eos == vocab.end()) throw Error("tokenizer: vocab file '" + path + "' has no \"</s>\" token: not an OPT vocabulary");
  bos = eos->second;
  if (auto p = vocab.find("<pad>"); p != vocab.end()) pad = p->second;
}

void Gpt2Tokenizer::Impl::load_merges(const std::string& path, const std::string& text) {
  std::size_t line_no = 0, pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();  // last line without newline: still a merge
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    // HF drops line 1 unconditionally, so demand that it is the header rather than lose a merge.
    if (line_no == 1) {
      if (line.substr(0, 1) != "#")
        throw Error("tokenizer: merges file '" + path + "' line 1: expected the '#version: 0.2' header, got '" +
                    std::string(line) + "'");
      continue;
    }
    if (line.empty() && pos >= text.size()) break;  // the trailing newline
    std::vector<std::string_view> parts;
    for (std::size_t i = 0; i < line.size();) {
      std::size_t j = line.find_first_of(" \t", i);
      if (j == std::string_view::npos) j = line.size();
      if (j > i) parts.push_back(line.substr(i, j - i));
      i = j + 1;
    }
    const std::string where = "tokenizer: merges file '" + path + "' line " + std::to_string(line_no) + ": ";
    if (parts.size() != 2)
      throw Error(where + "expected two symbols separated by a space, got '" + std::string(line) + "'");
    std::string merged = std::string(parts[0]) + std::string(parts[1]);
    auto res = vocab.find(merged);
    if (res == vocab.end()) throw Error(where + "the merge result '" + merged + "' is not in the vocab");
    ++merge_lines;
    auto l = vocab.find(parts[0]), r = vocab.find(parts[1]);
    // A side missing from the vocab can never appear in a word (all bytes and all merge results are in
    // the vocab), so such a merge can never fire: skipping it keeps HF's result.
    if (l == vocab.end() || r == vocab.end()) continue;
    // A repeated pair keeps its last rank, like HF's dict(zip(merges, range(...))).
    merges[pair_key(l->second, r->second)] = {static_cast<int32_t>(merge_lines - 1), res->second};
  }
  if (line_no == 0) throw Error("tokenizer: merges file '" + path + "' is empty");
}

void Gpt2Tokenizer::Impl::compile_pattern() {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kGpt2Pattern), PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err,
                     &err_off, nullptr);
  if (!re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw Error(std::string("tokenizer: PCRE2 cannot compile the GPT-2 pattern: ") + reinterpret_cast<char*>(msg) +
                " (is libpcre2-8 built with Unicode support?)");
  }
  jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;  // without JIT the interpreter is used: slower, same result
}

template <class F>
void Gpt2Tokenizer::Impl::for_each_pre_token(std::string_view piece, pcre2_match_data* md, F&& f) const {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
  std::size_t pos = 0;
  while (pos < piece.size()) {
    // The text was validated once up front, so PCRE2 need not re-check UTF-8 at every call.
    int rc = pcre2_match(re, subject, piece.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;  // cannot happen: the last alternatives match any character
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      throw Error(std::string("tokenizer: PCRE2 match failed: ") + reinterpret_cast<char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    if (ov[1] <= ov[0]) break;  // no alternative matches empty; guard against looping anyway
    f(piece.substr(ov[0], ov[1] - ov[0]));
    pos = ov[1];
  }
}

// HF's GPT2Tokenizer.bpe, on ids instead of strings (the vocab is one-to-one, so the two agree).
void Gpt2Tokenizer::Impl::bpe(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<int32_t> syms, next;
  syms.reserve(word.size());
  for (char c : word) syms.push_back(byte_id[static_cast<unsigned char>(c)]);
  while (syms.size() > 1) {
    const Merge* best = nullptr;
    int32_t first = 0, second = 0;
    for (std::size_t i = 0; i + 1 < syms.size(); ++i) {
      auto it = merges.find(pair_key(syms[i], syms[i + 1]));
      if (it != merges.end() && (!best || it->second.rank < best->rank)) {
        best = &it->second;
        first = syms[i];
        second = syms[i + 1];
      }
    }
    if (!best) break;
    next.clear();
    for (std::size_t i = 0; i < syms.size();) {
      if (i + 1 < syms.size() && syms[i] == first && syms[i + 1] == second) {
        next.push_back(best->result);
        i += 2;
      } else {
        next.push_back(syms[i++]);
      }
    }
    syms.swap(next);
  }
  out.insert(out.end(), syms.begin(), syms.end());
}

void Gpt2Tokenizer::Impl::encode_plain(std::string_view piece, pcre2_match_data* md, std::vector<int32_t>& out) const {
  for_each_pre_token(piece, md, [&](std::string_view word) {
    auto it = cache.find(word);
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
    std::vector<int32_t> ids;
    bpe(word, ids);
    out.insert(out.end(), ids.begin(), ids.end());
    if (cache.size() >= kMaxCachedWords) cache.clear();
    cache.emplace(std::string(word), std::move(ids));
  });
}

Gpt2Tokenizer::Gpt2Tokenizer(const std::string& vocab_path, const std::string& merges_path)
    : impl_(std::make_unique<Impl>()) {
  std::string vocab_text = read_whole_file(vocab_path, "vocab");
  std::string merges_text = read_whole_file(merges_path, "merges");
  impl_->load_vocab(vocab_path, vocab_text);
  impl_->load_merges(merges_path, merges_text);
  impl_->compile_pattern();
  impl_->files_sha = sha256_hex(sha256_hex(vocab_text) + "\n" + sha256_hex(merges_text) + "\n");
}

Gpt2Tokenizer::~Gpt2Tokenizer() = default;
Gpt2Tokenizer::Gpt2Tokenizer(Gpt2Tokenizer&&) noexcept = default;
Gpt2Tokenizer& Gpt2Tokenizer::operator=(Gpt2Tokenizer&&) noexcept = default;

std::vector<int32_t> Gpt2Tokenizer::encode(std::string_view text, bool add_bos) const {
  if (auto bad = find_invalid_utf8(text))
    throw Error("tokenizer: input is not valid UTF-8 at byte offset " + std::to_string(*bad) + " (of " +
                std::to_string(text.size()) + " bytes); decode or clean the text before tokenizing");
  const Impl& m = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos) out.push_back(m.bos);

  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create_from_pattern(m.re, nullptr), &pcre2_match_data_free);
  if (!md) throw Error("tokenizer: out of memory creating PCRE2 match data");
  std::lock_guard<std::mutex> lock(m.cache_mutex);

  // Split out literal "</s>" / "<pad>" the way HF splits added tokens before pre-tokenising.
  std::size_t start = 0, pos = 0;
  while ((pos = text.find('<', pos)) != std::string_view::npos) {
    int32_t special = -1;
    std::size_t len = 0;
    if (text.substr(pos, 4) == "</s>") { special = m.bos; len = 4; }
    else if (m.pad >= 0 && text.substr(pos, 5) == "<pad>") { special = m.pad; len = 5; }
    if (special < 0) { ++pos; continue; }
    m.encode_plain(text.substr(start, pos - start), md.get(), out);
    out.push_back(special);
    start = pos = pos + len;
  }
  m.encode_plain(text.substr(start), md.get(), out);
  return out;
}

std::string Gpt2Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<std::size_t>(id) >= m.id_known.size() || !m.id_known[id])
      throw Error("tokenizer: decode got token id " + std::to_string(id) + ", which is not in the vocab");
    if (skip_special_tokens && (id == m.bos || id == m.pad)) continue;
    bytes += m.id_to_bytes[id];
  }
  // errors="replace": each maximal ill-formed subpart becomes one U+FFFD.
  std::string out;
  out.reserve(bytes.size());
  for (std::size_t i = 0; i < bytes.size();) {
    Utf8Char c = next_utf8_char(bytes, i);
    if (c.valid) out.append(bytes, i, c.len);
    else out += "\xEF\xBF\xBD";
    i += c.len;
  }
  return out;
}

std::vector<std::string> Gpt2Tokenizer::pre_tokenize(std::string_view text) const {
  if (auto bad = find_invalid_utf8(text))
    throw Error("tokenizer: input is not valid UTF-8 at byte offset " + std::to_string(*bad));
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create_from_pattern(impl_->re, nullptr), &pcre2_match_data_free);
  std::vector<std::string> words;
  impl_->for_each_pre_token(text, md.get(), [&](std::string_view w) { words.emplace_back(w); });
  return words;
}

int32_t Gpt2Tokenizer::bos_id() const { return impl_->bos; }
int32_t Gpt2Tokenizer::pad_id() const { return impl_->pad; }
std::size_t Gpt2Tokenizer::vocab_size() const { return impl_->vocab.size(); }
std::size_t Gpt2Tokenizer::merges_count() const { return impl_->merge_lines; }
const std::string& Gpt2Tokenizer::files_sha256() const { return impl_->files_sha; }
bool Gpt2Tokenizer::jit_enabled() const { return impl_->jit; }

std::optional<int32_t> Gpt2Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->vocab.find(token);
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}

const std::string& Gpt2Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= impl_->id_known.size() || !impl_->id_known[id])
    throw Error("tokenizer: token id " + std::to_string(id) + " is not in the vocab");
  return impl_->id_to_token[id];
}

std::size_t Gpt2Tokenizer::cached_words() const {
  std::lock_guard<std::mutex> lock(impl_->cache_mutex);
  return impl_->cache.size();
}

}  // namespace pt::corpus
