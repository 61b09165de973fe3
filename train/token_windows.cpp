#include "train/token_windows.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "tensor/error.h"
#include "tensor/random.h"

namespace pt::train {

TokenWindows::TokenWindows(const std::vector<int32_t>& tokens, int64_t seqlen, uint64_t seed)
    : tokens_(tokens), seqlen_(seqlen), seed_(seed) {
  PT_CHECK(seqlen >= 2, "TokenWindows: seqlen ", seqlen, " is too short (at least 2)");
  PT_CHECK(int64_t(tokens.size()) >= 2 * seqlen, "TokenWindows: the token stream holds ", tokens.size(),
           " ids, fewer than two windows of ", seqlen);
  // With a shift s < seqlen, windows_ windows of seqlen fit: s + windows_ * seqlen <= size.
  windows_ = int64_t(tokens.size()) / seqlen - 1;
}

void TokenWindows::prepare_epoch(int64_t epoch) const {
  if (epoch == epoch_) return;
  // Fisher–Yates driven by the counter-based generator: identical on every platform and standard library.
  const uint64_t epoch_seed = random_bits(seed_, uint64_t(epoch));
  uint64_t counter = 0;
  shift_ = int64_t(random_bits(epoch_seed, counter++) % uint64_t(seqlen_));
  order_.resize(size_t(windows_));
  std::iota(order_.begin(), order_.end(), int64_t(0));
  for (int64_t i = windows_ - 1; i > 0; --i) {
    const int64_t j = int64_t(random_bits(epoch_seed, counter++) % uint64_t(i + 1));
    std::swap(order_[size_t(i)], order_[size_t(j)]);
  }
  epoch_ = epoch;
}

int64_t TokenWindows::start_of(int64_t sample) const {
  PT_CHECK(sample >= 0, "TokenWindows: sample index ", sample, " is negative");
  prepare_epoch(sample / windows_);
  return shift_ + order_[size_t(sample % windows_)] * seqlen_;
}

Tensor TokenWindows::batch(int64_t first_sample, int64_t rows) const {
  PT_CHECK(rows >= 1, "TokenWindows: batch of ", rows, " rows");
  Tensor out = Tensor::empty({rows, seqlen_}, DType::i32, Device::cpu);
  int32_t* dst = out.data<int32_t>();
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(dst + r * seqlen_, tokens_.data() + start_of(first_sample + r), size_t(seqlen_) * sizeof(int32_t));
  return out;
}

}  // namespace pt::train
