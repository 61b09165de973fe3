// libFuzzer harness: OPT's byte-level BPE encoder (corpus/tokenizer.cpp) with data/opt-tokenizer (run from the
// repository root, or set PT_DATA). Oracle: valid UTF-8 encodes to ids inside the vocabulary that decode back to
// the same bytes (special tokens kept as their text); invalid UTF-8 is refused with pt::corpus::Error naming the
// offset of the first bad byte, exactly where find_invalid_utf8 says.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "corpus/tokenizer.h"

namespace {
std::unique_ptr<pt::corpus::Gpt2Tokenizer> g_tokenizer;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* env = std::getenv("PT_DATA");
  const std::string dir = std::string(env ? env : "data") + "/opt-tokenizer/";
  try {
    g_tokenizer = std::make_unique<pt::corpus::Gpt2Tokenizer>(dir + "vocab.json", dir + "merges.txt");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_tokenizer_encode: %s\n", e.what());
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (!g_tokenizer) return 0;  // reported once by LLVMFuzzerInitialize
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto bad = pt::corpus::find_invalid_utf8(text);
  std::vector<int32_t> ids;
  try {
    ids = g_tokenizer->encode(text, /*add_bos=*/false);
  } catch (const pt::corpus::Error& e) {
    if (!bad || std::string(e.what()).find("offset " + std::to_string(*bad)) == std::string::npos) __builtin_trap();
    return 0;
  }
  if (bad) __builtin_trap();  // invalid UTF-8 accepted
  for (int32_t id : ids)
    if (id < 0 || size_t(id) >= g_tokenizer->vocab_size()) __builtin_trap();
  if (g_tokenizer->decode(ids, /*skip_special_tokens=*/false) != text) __builtin_trap();
  return 0;
}

// For the replay runner: without the tokenizer files there is nothing to check (reported as skipped).
extern "C" bool pt_fuzz_harness_can_run() { return g_tokenizer != nullptr; }
