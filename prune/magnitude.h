// Magnitude pruning: prune the smallest |W| (one threshold per matrix by default, like the --gmp baseline and
// locuslab/wanda's prune_magnitude). Needs no calibration data.
#pragma once
#include "prune/mask.h"

namespace pt::prune {

// weight f32 [rows, cols] (any device) -> u8 keep mask on its device. The weight itself is not modified.
Tensor magnitude_mask(const Tensor& weight, const SparsityPattern& pattern, MaskGroup group = MaskGroup::matrix,
                      const Tensor& prev_keep = {}, const std::string& variant = "");

}  // namespace pt::prune
