// Text generation with a KV cache: the prompt runs through the model once, then each step feeds only the
// newest token. Greedy decoding, or sampling with temperature and top-k from a seeded generator. Ids at or
// above the tokenizer's vocabulary (OPT's 50265 ≤ id < 50272 padding rows) are never produced.
#pragma once
#include <cstdint>
#include <vector>

#include "opt/model.h"

namespace pt::opt {

struct GenerationOptions {
  int64_t max_new_tokens = 32;
  bool do_sample = false;        // false: greedy (argmax, first index on ties)
  double temperature = 1.0;      // sampling only; > 0
  int64_t top_k = 0;             // sampling only; 0 = the whole vocabulary
  uint64_t seed = 0;             // sampling generator
  int64_t tokenizer_vocab_size = 50265;  // ids >= min(this, model vocab) are never produced
  int64_t eos_token_id = 2;      // a sequence stops after producing it; -1 = never stop early
};

// prompts: equal-length token lists (one per sequence). Returns each prompt followed by its generated tokens
// (up to max_new_tokens; the eos token is kept when produced). Runs under NoGradGuard in eval mode (the
// model's training flag is restored afterwards).
std::vector<std::vector<int64_t>> generate(OptForCausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
                                           const GenerationOptions& options);
std::vector<int64_t> generate(OptForCausalLM& model, const std::vector<int64_t>& prompt,
                              const GenerationOptions& options);

// Picks the next token from one row of logits restricted to ids [0, allowed): greedy, or sampled with the
// options' temperature and top-k using one uniform draw from gen.
int64_t select_next_token(const float* logits, int64_t allowed, const GenerationOptions& options, Generator& gen);

}  // namespace pt::opt
