// Smoke demo: shows the build's devices and runs a few ops on each.
#include <cstdio>

#include "tensor/ops.h"

int main() {
  using namespace pt;
  std::printf("prune-and-tune demo\n  CUDA device usable: %s\n", cuda_is_available() ? "yes" : "no");
  Generator g(0);
  Tensor a = Tensor::normal({4, 3}, 0.0, 1.0, g);
  Tensor b = Tensor::normal({3}, 0.0, 1.0, g);
  Tensor c = relu(add(a, b));
  std::printf("  relu(a + b) on cpu: %s, sum %.6f\n", c.describe().c_str(), c.to_vector<double>()[0]);
  return 0;
}
