// SHA-256 of bytes and files (OpenSSL EVP), as lowercase hex. Data files, tokenizer files and token
// caches are identified by these digests, so a changed input is noticed instead of silently reused.
// This header also holds pt::corpus::Error, the exception every corpus/ function throws: it is the one
// header all corpus files include, and the corpus layer does not depend on tensor/ (where pt::Error lives).
#pragma once
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace pt::corpus {

// One-line message that says what went wrong, with which file, and what to do.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Incremental hasher for data that arrives in pieces (files read in chunks, id arrays).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, std::size_t size);
  void update(std::string_view bytes) { update(bytes.data(), bytes.size()); }
  std::string hex_digest();  // finishes the hash; the object must not be updated afterwards

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string sha256_hex(const void* data, std::size_t size);
std::string sha256_hex(std::string_view bytes);
// Streams the file; throws Error naming the path if it cannot be opened or read.
std::string sha256_file_hex(const std::string& path);

}  // namespace pt::corpus
