#include "sparse/auto_kernel.h"

#include <algorithm>
#include <chrono>

#include "tensor/ops.h"
#include "tensor/random.h"
#if PT_CUDA
#include "tensor/cuda/cuda_context.h"
#endif

namespace pt::sparse {

namespace {

void wait_for(Device device) {
#if PT_CUDA
  if (device == Device::cuda) cuda::synchronize();
#else
  (void)device;
#endif
}

// Median wall time of `repeats` forwards after one warm-up (the device is drained around each).
double time_forward(const PackedLinearWeight& w, const Tensor& x, const Tensor& bias, int repeats) {
  (void)w.forward(x, bias);
  wait_for(w.device());
  std::vector<double> times;
  for (int r = 0; r < std::max(1, repeats); ++r) {
    const auto start = std::chrono::steady_clock::now();
    (void)w.forward(x, bias);
    wait_for(w.device());
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return times[times.size() / 2];
}

}  // namespace

Tensor AutoWeight::forward(const Tensor& x, const Tensor& bias) const {
  const int64_t tokens = x.size(-1) > 0 ? x.numel() / x.size(-1) : 0;
  return (tokens <= decode_max_tokens_ ? decode_ : prefill_)->forward(x, bias);
}

LinearKernel AutoWeight::kernel_for(int64_t tokens) const {
  return (tokens <= decode_max_tokens_ ? decode_ : prefill_)->kernel();
}

int64_t AutoWeight::stored_bytes() const {
  return decode_ == prefill_ ? decode_->stored_bytes() : decode_->stored_bytes() + prefill_->stored_bytes();
}

std::string AutoWeight::describe() const {
  return "decode " + linear_kernel_name(decode_->kernel()) + ", prefill " + linear_kernel_name(prefill_->kernel());
}

std::shared_ptr<AutoWeight> pack_fastest(const Tensor& weight, const Tensor& keep, const std::string& what,
                                         const AutoKernelOptions& options) {
  PT_CHECK(options.decode_tokens > 0 && options.prefill_tokens > 0, "auto kernel choice for ", what,
           ": token counts must be positive");
  Generator gen(0x5eed);
  const Device device = weight.device();
  const int64_t in = weight.size(1), out = weight.size(0);
  const Tensor x_decode = Tensor::normal({options.decode_tokens, in}, 0.0, 1.0, gen, weight.dtype(), device);
  const Tensor x_prefill = Tensor::normal({options.prefill_tokens, in}, 0.0, 1.0, gen, weight.dtype(), device);
  const Tensor bias = Tensor::zeros({out}, weight.dtype(), device);

  auto result = std::make_shared<AutoWeight>();
  result->in_ = in;
  result->out_ = out;
  result->device_ = device;
  result->decode_max_tokens_ = options.decode_max_tokens;
  double best_decode = 0, best_prefill = 0;
  for (const LinearKernel k : options.candidates) {
    PT_CHECK(k != LinearKernel::auto_select, "auto kernel choice: 'auto' cannot be its own candidate");
    std::shared_ptr<PackedLinearWeight> packed;
    try {
      packed = pack_linear_weight(k, weight, keep, default_packed_dtype(k, weight.dtype(), device), what);
    } catch (const Error&) {
      continue;  // this form cannot hold the weight (a mask that is not 2:4, a shape): not a candidate
    }
    KernelTiming t{k, time_forward(*packed, x_decode, bias, options.repeats),
                   time_forward(*packed, x_prefill, bias, options.repeats)};
    result->timings_.push_back(t);
    if (!result->decode_ || t.decode_seconds < best_decode) {
      result->decode_ = packed;
      best_decode = t.decode_seconds;
    }
    if (!result->prefill_ || t.prefill_seconds < best_prefill) {
      result->prefill_ = packed;
      best_prefill = t.prefill_seconds;
    }
  }
  PT_CHECK(result->decode_ && result->prefill_, "auto kernel choice for ", what, ": no candidate kernel can run it");
  return result;
}

}  // namespace pt::sparse
