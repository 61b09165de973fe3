// libFuzzer harness: a Hugging Face config.json (opt/hf_checkpoint.cpp's reader). A config that is accepted must
// describe itself, count its parameters, and survive the project's own config.json writer unchanged (the
// writer is what checkpoints and --export-hf use); a refusal must be a pt::Error.
#include <cstddef>
#include <cstdint>
#include <string>

#include "opt/hf_checkpoint.h"
#include "tensor/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  pt::opt::OptConfig c;
  try {
    c = pt::opt::parse_hf_config(text, "fuzz");
  } catch (const pt::Error&) {
    return 0;
  }
  (void)c.describe();
  const pt::opt::OptConfig back = pt::opt::parse_hf_config(pt::opt::hf_config_json(c), "fuzz (written back)");
  if (!back.same_architecture(c) || back.tie_word_embeddings != c.tie_word_embeddings ||
      back.num_parameters() != c.num_parameters())
    __builtin_trap();  // the writer and the reader disagree
  return 0;
}
