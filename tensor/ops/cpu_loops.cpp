#include "tensor/ops/cpu_loops.h"

namespace pt::cpu {

Strides broadcast_strides(const Tensor& t, const Shape& shape) {
  return t.expand(shape).strides();
}

}  // namespace pt::cpu
