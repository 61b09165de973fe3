// Training batches from a token stream: windows of `seqlen` consecutive ids, every window a fresh
// sample. Epoch e shifts the window grid by a random offset in [0, seqlen) and visits the windows in a
// random order, so each epoch sees every token once and different epochs cut the text differently.
//
// The window of global sample index g (= (step * grad_accum + micro) * batch + row) is a pure function of
// (seed, g): a resumed run draws exactly the batches an uninterrupted run would, with no sampler state to
// checkpoint.
#pragma once
#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace pt::train {

class TokenWindows {
 public:
  // Throws pt::Error when the stream holds fewer than 2 * seqlen ids.
  TokenWindows(const std::vector<int32_t>& tokens, int64_t seqlen, uint64_t seed);

  int64_t windows_per_epoch() const { return windows_; }
  int64_t seqlen() const { return seqlen_; }
  int64_t start_of(int64_t sample) const;  // first token of sample g
  // i32 [rows, seqlen] on the CPU: samples first_sample … first_sample + rows - 1.
  Tensor batch(int64_t first_sample, int64_t rows) const;

 private:
  void prepare_epoch(int64_t epoch) const;
  const std::vector<int32_t>& tokens_;
  int64_t seqlen_, windows_;
  uint64_t seed_;
  mutable int64_t epoch_ = -1;
  mutable int64_t shift_ = 0;
  mutable std::vector<int64_t> order_;
};

}  // namespace pt::train
