// Learning-rate schedules, evaluated per optimizer step: lr = base_lr * factor(step).
//
// Steps count from 0 like torch's LambdaLR (scheduler.step() after each optimizer.step()): the first
// optimizer step uses lr_at(0). The factors are Hugging Face's get_{constant,linear,cosine}_schedule_with_warmup
// with a floor `min_lr_ratio` (r) added to the decay phase:
//   warm-up   (step < W):  factor = step / max(1, W)              (so lr_at(0) = 0 when W > 0)
//   constant  (step >= W): factor = 1
//   linear    (step >= W): factor = r + (1 - r) * max(0, (T - step) / max(1, T - W))
//   cosine    (step >= W): factor = r + (1 - r) * 0.5 * (1 + cos(pi * min(1, (step - W) / max(1, T - W))))
// with W = warmup_steps and T = total_steps. After T the linear and cosine factors stay at r (HF's cosine
// would rise again; this one is clamped). total_steps is ignored by `constant`.
#pragma once
#include <cstdint>
#include <string>

namespace pt::nn {

enum class LrScheduleKind { constant, linear, cosine };
const char* lr_schedule_kind_name(LrScheduleKind k);
LrScheduleKind parse_lr_schedule_kind(const std::string& name);  // "constant" | "linear" | "cosine"

struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::constant;
  double base_lr = 1e-3;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;    // linear/cosine: the step where the decay reaches min_lr_ratio; >= warmup_steps
  double min_lr_ratio = 0.0;  // in [0, 1]

  // Throws pt::Error for nonsense: negative or non-finite base_lr, negative warm-up, total < warm-up (linear,
  // cosine), min_lr_ratio outside [0, 1].
  void validate() const;
  double lr_at(int64_t step) const;  // validates; step >= 0
};

}  // namespace pt::nn
