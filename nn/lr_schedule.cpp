// Learning-rate schedules (formulas in lr_schedule.h).
#include "nn/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "tensor/error.h"

namespace pt::nn {

const char* lr_schedule_kind_name(LrScheduleKind k) {
  switch (k) {
    case LrScheduleKind::constant: return "constant";
    case LrScheduleKind::linear: return "linear";
    case LrScheduleKind::cosine: return "cosine";
  }
  return "?";
}

LrScheduleKind parse_lr_schedule_kind(const std::string& name) {
  if (name == "constant") return LrScheduleKind::constant;
  if (name == "linear") return LrScheduleKind::linear;
  if (name == "cosine") return LrScheduleKind::cosine;
  PT_FAIL("LrSchedule: unknown kind '", name, "' (allowed: constant, linear, cosine)");
}

void LrSchedule::validate() const {
  PT_CHECK(std::isfinite(base_lr) && base_lr >= 0, "LrSchedule: base_lr = ", base_lr, " must be finite and >= 0");
  PT_CHECK(warmup_steps >= 0, "LrSchedule: warmup_steps = ", warmup_steps, " must be >= 0");
  PT_CHECK(min_lr_ratio >= 0 && min_lr_ratio <= 1, "LrSchedule: min_lr_ratio = ", min_lr_ratio,
           " must lie in [0, 1]");
  if (kind != LrScheduleKind::constant)
    PT_CHECK(total_steps >= warmup_steps, "LrSchedule (", lr_schedule_kind_name(kind), "): total_steps = ",
             total_steps, " is less than warmup_steps = ", warmup_steps);
}

double LrSchedule::lr_at(int64_t step) const {
  validate();
  PT_CHECK(step >= 0, "LrSchedule::lr_at: step ", step, " is negative (steps count from 0)");
  if (step < warmup_steps) return base_lr * double(step) / double(std::max<int64_t>(1, warmup_steps));
  const double decay_len = double(std::max<int64_t>(1, total_steps - warmup_steps));
  double factor = 1.0;
  switch (kind) {
    case LrScheduleKind::constant: return base_lr;
    case LrScheduleKind::linear: factor = std::max(0.0, double(total_steps - step) / decay_len); break;
    case LrScheduleKind::cosine: {
      const double progress = std::min(1.0, double(step - warmup_steps) / decay_len);
      factor = 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
      break;
    }
  }
  return base_lr * (min_lr_ratio + (1.0 - min_lr_ratio) * factor);
}

}  // namespace pt::nn
