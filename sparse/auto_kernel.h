// linear_kernel = auto: for each layer, pack the weight in every form that can run it, time each form's forward
// on the layer's own shape at a decode-sized and a prefill-sized token count, and keep the fastest form for
// each (the others are dropped). A forward then runs the decode choice for up to `decode_max_tokens` rows and
// the prefill choice above, so generation (a long prompt, then one token at a time) gets both right.
#pragma once
#include <string>
#include <vector>

#include "sparse/packed_linear.h"

namespace pt::sparse {

struct AutoKernelOptions {
  int64_t decode_tokens = 1;        // rows timed for the decode choice
  int64_t prefill_tokens = 512;     // rows timed for the prefill choice
  int64_t decode_max_tokens = 16;   // forwards with at most this many rows use the decode choice
  int repeats = 3;                  // timed runs per candidate (after one warm-up); the median counts
  std::vector<LinearKernel> candidates = {LinearKernel::dense, LinearKernel::csr, LinearKernel::bitmap,
                                          LinearKernel::two_four};  // those that cannot run the weight are skipped
};

struct KernelTiming {
  LinearKernel kernel;
  double decode_seconds = 0, prefill_seconds = 0;
};

class AutoWeight final : public PackedLinearWeight {
 public:
  Tensor forward(const Tensor& x, const Tensor& bias) const override;
  LinearKernel kernel() const override { return LinearKernel::auto_select; }
  LinearKernel kernel_for(int64_t tokens) const override;
  int64_t stored_bytes() const override;
  Tensor to_dense() const override { return prefill_->to_dense(); }

  const std::vector<KernelTiming>& timings() const { return timings_; }
  std::string describe() const;  // "decode csr, prefill dense"

 private:
  friend std::shared_ptr<AutoWeight> pack_fastest(const Tensor&, const Tensor&, const std::string&,
                                                  const AutoKernelOptions&);
  std::shared_ptr<PackedLinearWeight> decode_, prefill_;
  int64_t decode_max_tokens_ = 16;
  std::vector<KernelTiming> timings_;
};

// Packs `weight` (u8 `keep` or undefined) for auto; each candidate's values get default_packed_dtype().
std::shared_ptr<AutoWeight> pack_fastest(const Tensor& weight, const Tensor& keep, const std::string& what,
                                         const AutoKernelOptions& options = {});

}  // namespace pt::sparse
