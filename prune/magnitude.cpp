// Magnitude pruning: the scores are |W|.
#include "prune/magnitude.h"

#include "tensor/ops.h"

namespace pt::prune {

Tensor magnitude_mask(const Tensor& weight, const SparsityPattern& pattern, MaskGroup group, const Tensor& prev_keep,
                      const std::string& variant) {
  check_weight_matrix("magnitude_mask", weight, "weight");
  return select_mask(abs(weight), pattern, group, prev_keep, variant);
}

}  // namespace pt::prune
