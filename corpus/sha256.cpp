#include "corpus/sha256.h"

#include <openssl/evp.h>

#include <fstream>
#include <vector>

namespace pt::corpus {

struct Sha256::Impl {
  EVP_MD_CTX* ctx = nullptr;
  bool finished = false;
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  impl_->ctx = EVP_MD_CTX_new();
  if (!impl_->ctx || EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(impl_->ctx);
    throw Error("sha256: OpenSSL EVP_DigestInit_ex(sha256) failed (is libcrypto usable?)");
  }
}

Sha256::~Sha256() { EVP_MD_CTX_free(impl_->ctx); }

void Sha256::update(const void* data, std::size_t size) {
  if (impl_->finished) throw Error("sha256: update() after hex_digest() (internal error)");
  if (size > 0 && EVP_DigestUpdate(impl_->ctx, data, size) != 1)
    throw Error("sha256: OpenSSL EVP_DigestUpdate failed");
}

std::string Sha256::hex_digest() {
  if (impl_->finished) throw Error("sha256: hex_digest() called twice (internal error)");
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(impl_->ctx, digest, &len) != 1) throw Error("sha256: OpenSSL EVP_DigestFinal_ex failed");
  impl_->finished = true;
  static const char* kHex = "0123456789abcdef";
  std::string out(2 * len, '0');
  for (unsigned int i = 0; i < len; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 15];
  }
  return out;
}

std::string sha256_hex(const void* data, std::size_t size) {
  Sha256 h;
  h.update(data, size);
  return h.hex_digest();
}

std::string sha256_hex(std::string_view bytes) { return sha256_hex(bytes.data(), bytes.size()); }

std::string sha256_file_hex(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("sha256: cannot open '" + path + "' for reading (does the file exist?)");
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.update(buf.data(), static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) throw Error("sha256: read error on '" + path + "'");
  return h.hex_digest();
}

}  // namespace pt::corpus
