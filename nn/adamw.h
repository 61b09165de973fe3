// AdamW with torch.optim.AdamW's exact update, parameter groups, per-parameter keep-masks (masked AdamW:
// pruned weights stay exactly 0.0) and three implementations of one step selectable at run time.
//
// One step for a parameter p with gradient g (torch's _single_tensor_adamw, decoupled decay first):
//   t += 1;  p *= 1 - lr*wd;  m += (1-beta1)*(g - m);  v = beta2*v + (1-beta2)*g*g;
//   denom = sqrt(v)/sqrt(1-beta2^t) + eps;  p -= lr/(1-beta1^t) * m/denom
// Masked positions (keep == 0): p, m and v are written as exactly +0.0 and the gradient there is ignored,
// so neither weight decay nor a stray gradient can move a pruned weight.
// Like torch, a parameter whose gradient is undefined is skipped and its step count does not advance.
//
// The step is the kernel family adamw (tensor/kernel_registry.h; variants registered in nn/kernel_families.cpp);
// all compute the same function:
//   reference  plain per-element loop in double on the CPU (the oracle; CPU tensors only)
//   unfused    a composition of tensor ops from tensor/ops.h; CPU or CUDA (the benchmark baseline)
//   fused      one pass over all parameters: on CUDA one kernel launch (multi-tensor apply, 16-byte vector
//              accesses, f32 with torch's rounding points); on the CPU one multi-threaded AVX2 loop
//              (nn/adamw_cpu.h) computing the same f32 function, bit for bit
//
// Gradient accumulation: backward() adds into Variable::grad until zero_grad(), so for k micro-batches
// run k backward passes, then scale_grads(params, 1.0/k) (or scale each loss by 1/k), then clip, then
// step(lr), then zero_grad(). accumulate_grad() adds a gradient computed outside autograd the same way.
//
// Checkpoints: state() exposes, per parameter (by index, with the caller's name when given), the step
// count and the live exp_avg / exp_avg_sq tensors; load_state() copies them back, so a resumed run is
// bit-identical to an uninterrupted one.
//
// Streams: the fused step runs on pt::cuda::current_stream() and reuses device buffers across steps,
// which is safe because every step is ordered on that one stream (the project's convention).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "autograd/variable.h"
#include "tensor/kernel_registry.h"
#include "tensor/tensor.h"

namespace pt::nn {

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  std::string kernel;  // an adamw_family() variant; "" = the family's selection
};

// Device-side buffers of the fused CUDA kernel, kept by the optimizer across steps.
struct AdamWFusedCache {
  std::vector<int64_t> sizes;  // element counts the chunk table was built for
  Tensor chunks;               // u8 bytes on CUDA: one {tensor, chunk} entry per block
  int64_t num_chunks = 0;
  Tensor descriptors;          // u8 bytes on CUDA, rewritten every step
};

// What a variant of the kernel family adamw receives: every parameter that takes this step (f32, contiguous; g
// of p's shape; keep u8 or undefined, with p, m and v already 0 where it is 0, as set_mask leaves them), its
// weight decay and its step count (this step included).
struct AdamWParamStep {
  Tensor p, g, m, v, keep;
  double weight_decay = 0;
  int64_t step = 0;
};
struct AdamWStepArgs {
  std::vector<AdamWParamStep> params{};
  double lr = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  AdamWFusedCache* cache = nullptr;  // for the fused CUDA kernel; null = none kept (a temporary one is used)
};
using AdamWStep = void(const AdamWStepArgs&);
kernels::Family<AdamWStep>& adamw_family();

// A group shares one weight decay (HF convention: 0 for biases and layer norms, e.g. 0.1 elsewhere).
struct AdamWParamGroup {
  std::vector<autograd::Variable> params;  // f32, contiguous, on one device each (handles share storage)
  double weight_decay = 0.0;
  std::vector<std::string> names;  // empty, or one per param: checkpoint keys and error messages
};

struct AdamWParamState {
  std::string name;  // "" when the caller gave no names
  int64_t step = 0;  // steps this parameter has taken
  Tensor exp_avg;    // m, same shape/device as the parameter
  Tensor exp_avg_sq; // v
};

class AdamW {
 public:
  explicit AdamW(std::vector<AdamWParamGroup> groups, AdamWConfig config = {});
  AdamW(AdamW&&) = default;  // movable; a copy would silently share the state tensors
  AdamW& operator=(AdamW&&) = default;
  AdamW(const AdamW&) = delete;
  AdamW& operator=(const AdamW&) = delete;

  size_t num_params() const { return slots_.size(); }  // parameters in group order
  const autograd::Variable& param(size_t i) const;
  const std::string& name(size_t i) const;
  double weight_decay(size_t i) const;
  const AdamWConfig& config() const { return config_; }
  void set_kernel(const std::string& variant) { config_.kernel = variant; }  // "" = the family's selection

  // keep: u8 (0 = pruned), the parameter's shape and device. Zeroes p, m, v where keep == 0 right away.
  // An undefined tensor removes the mask.
  void set_mask(size_t i, const Tensor& keep);
  const Tensor& mask(size_t i) const;

  void step(double lr) { step(lr, config_.kernel); }  // lr from an LrSchedule (schedules live outside)
  void step(double lr, const std::string& variant);    // variant of adamw_family(); "" = its selection
  void zero_grad();  // drops every parameter's gradient

  int64_t step_count(size_t i) const;
  const Tensor& exp_avg(size_t i) const;
  const Tensor& exp_avg_sq(size_t i) const;
  std::vector<AdamWParamState> state() const;  // live tensors (not copies): write or clone them
  // Same number of entries and shapes; names must agree where both are non-empty. Values are copied (from
  // any device) into the live buffers; masked positions are re-zeroed.
  void load_state(const std::vector<AdamWParamState>& state);

  using FusedCache = AdamWFusedCache;

 private:
  struct Slot {
    autograd::Variable var;
    std::string name;
    double weight_decay = 0.0;
    Tensor m, v, keep;
    int64_t step = 0;
  };
  std::string label(size_t i) const;  // "parameter 3 ('fc1.weight')" for messages
  void check_grad(size_t i) const;

  AdamWConfig config_;
  std::vector<Slot> slots_;
  FusedCache fused_cache_;
};

// torch.nn.utils.clip_grad_norm_: total L2 norm over every defined gradient (all one device); when
// max_norm/(norm + 1e-6) < 1 every gradient is scaled by it. Returns the norm before clipping. Counts every
// element of each gradient, masked positions included (a masked Linear's backward already zeroes those).
double clip_grad_norm(const std::vector<autograd::Variable*>& params, double max_norm);
// The same total norm without clipping.
double grad_norm(const std::vector<autograd::Variable*>& params);
// grad *= factor for every defined gradient (e.g. 1/k after k accumulated micro-batches).
void scale_grads(const std::vector<autograd::Variable*>& params, double factor);
// var.grad += g (a copy of g when var has none yet), as backward() accumulates.
void accumulate_grad(autograd::Variable& var, const Tensor& g);

namespace detail {
// One parameter of the fused step; the same layout on host and device.
struct AdamWFusedTensor {
  float* p;
  const float* g;  // f32 today; a bf16 gradient would add a dtype tag here and a templated load
  float* m;
  float* v;
  const uint8_t* keep;  // nullptr: no mask
  int64_t n;
  float decay;      // 1 - lr*wd
  float step_size;  // lr / (1 - beta1^t)
  float bc2_sqrt;   // sqrt(1 - beta2^t)
  int32_t vectorized;  // set by the launcher: every pointer 16-byte aligned (keep 4-byte) and n >= 4
};
// One launch over all tensors on the current stream (adamw.cu; CUDA builds only).
void adamw_fused_step(std::vector<AdamWFusedTensor>& tensors, double beta1, double beta2, double eps,
                      AdamW::FusedCache& cache);
}  // namespace detail

}  // namespace pt::nn
