#include "corpus/token_cache.h"

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/atomic_file.h"
#include "base/error.h"

namespace pt::corpus {

// The file is read and written with the host's byte order; every machine this project targets is
// little-endian, so refuse to build elsewhere rather than write files other machines misread.
static_assert(std::endian::native == std::endian::little, "token caches are little-endian");

namespace {

constexpr char kMagic[8] = {'P', 'T', 'T', 'O', 'K', 'I', 'D', 'S'};
constexpr uint32_t kHeaderSize = 216;
constexpr std::size_t kHexLen = 64;

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t header_size;
  uint64_t count;
  char tokenizer_sha[kHexLen];
  char text_sha[kHexLen];
  char ids_sha[kHexLen];
};
static_assert(sizeof(Header) == kHeaderSize, "header must have no padding");

bool is_sha256_hex(const std::string& s) {
  if (s.size() != kHexLen) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace

std::optional<std::vector<int32_t>> load_token_cache(const std::string& path, const TokenCacheKey& key,
                                                     TokenCacheMiss* miss) {
  auto fail = [&](TokenCacheMiss::Kind kind, const std::string& why) -> std::optional<std::vector<int32_t>> {
    if (miss) *miss = {kind, "token cache '" + path + "': " + why};
    return std::nullopt;
  };
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return fail(TokenCacheMiss::Kind::Missing, "no such file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(TokenCacheMiss::Kind::Corrupt, "cannot be opened for reading");
  const auto file_size = std::filesystem::file_size(path, ec);
  if (ec) return fail(TokenCacheMiss::Kind::Corrupt, "cannot read its size: " + ec.message());

  Header h{};
  if (file_size < kHeaderSize || !in.read(reinterpret_cast<char*>(&h), kHeaderSize))
    return fail(TokenCacheMiss::Kind::Corrupt,
                "truncated: " + std::to_string(file_size) + " bytes, shorter than the " +
                    std::to_string(kHeaderSize) + "-byte header");
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0)
    return fail(TokenCacheMiss::Kind::Corrupt, "bad magic: not a prune-and-tune token cache");
  if (h.version != kTokenCacheVersion)
    return fail(TokenCacheMiss::Kind::Stale, "format version " + std::to_string(h.version) + ", this build reads " +
                                                 std::to_string(kTokenCacheVersion));
  if (h.header_size != kHeaderSize)
    return fail(TokenCacheMiss::Kind::Corrupt, "header size " + std::to_string(h.header_size) + ", expected " +
                                                   std::to_string(kHeaderSize));
  const std::string tok_sha(h.tokenizer_sha, kHexLen), text_sha(h.text_sha, kHexLen), ids_sha(h.ids_sha, kHexLen);
  if (tok_sha != key.tokenizer_sha256)
    return fail(TokenCacheMiss::Kind::Stale, "made with tokenizer files " + tok_sha.substr(0, 12) +
                                                 "..., current ones are " + key.tokenizer_sha256.substr(0, 12) + "...");
  if (text_sha != key.text_sha256)
    return fail(TokenCacheMiss::Kind::Stale, "made from text " + text_sha.substr(0, 12) + "..., current text is " +
                                                 key.text_sha256.substr(0, 12) + "...");
  // Compare sizes without overflow: a corrupt count must not wrap around to a plausible size.
  const uint64_t payload = file_size - kHeaderSize;
  if (h.count > payload / sizeof(int32_t) || payload != h.count * sizeof(int32_t))
    return fail(TokenCacheMiss::Kind::Corrupt,
                "header says " + std::to_string(h.count) + " ids (" + std::to_string(kHeaderSize) + " + 4*" +
                    std::to_string(h.count) + " bytes) but the file has " + std::to_string(file_size) +
                    " bytes (truncated or overwritten)");
  std::vector<int32_t> ids(h.count);
  if (h.count > 0 && !in.read(reinterpret_cast<char*>(ids.data()), static_cast<std::streamsize>(payload)))
    return fail(TokenCacheMiss::Kind::Corrupt, "read error in the id payload");
  if (sha256_hex(ids.data(), payload) != ids_sha)
    return fail(TokenCacheMiss::Kind::Corrupt, "id payload checksum mismatch (file damaged)");
  return ids;
}

void save_token_cache(const std::string& path, const TokenCacheKey& key, std::span<const int32_t> ids) {
  if (!is_sha256_hex(key.tokenizer_sha256) || !is_sha256_hex(key.text_sha256))
    throw Error("token cache '" + path + "': key checksums must be 64-character lowercase sha256 hex strings");
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error("token cache: cannot create folder '" + dir.string() + "': " + ec.message());

  Header h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.version = kTokenCacheVersion;
  h.header_size = kHeaderSize;
  h.count = ids.size();
  std::memcpy(h.tokenizer_sha, key.tokenizer_sha256.data(), kHexLen);
  std::memcpy(h.text_sha, key.text_sha256.data(), kHexLen);
  const std::string ids_sha = sha256_hex(ids.data(), ids.size_bytes());
  std::memcpy(h.ids_sha, ids_sha.data(), kHexLen);

  // Parallel processes may build the same cache: each writes its own temporary, the last rename wins.
  try {
    AtomicFile file(path, AtomicFile::Writers::many);
    file.write(&h, sizeof h);
    file.write(ids.data(), ids.size_bytes());
    file.commit();
  } catch (const ::pt::Error& e) {  // the helper throws the project-wide error; corpus/ throws its own
    throw Error(std::string("token cache: ") + e.what());
  }
}

}  // namespace pt::corpus
