// Switching a model's pruned Linear layers between the dense product and a packed sparse kernel for inference
// (`[run] linear_kernel = dense|masked|csr|bitmap|2of4|auto`, sparse/packed_linear.h). Only layers that carry a
// mask are packed: an unpruned layer has nothing to skip and stays dense under every kernel.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "nn/linear.h"
#include "sparse/auto_kernel.h"

namespace pt::nn {

struct LinearKernelOptions {
  sparse::LinearKernel kernel = sparse::LinearKernel::dense;
  sparse::AutoKernelOptions auto_options;  // for kernel = auto
};

struct PackedLayer {
  std::string name;
  std::string kernel;        // "csr", or for auto "decode csr, prefill dense"
  int64_t dense_bytes = 0;   // the weight as stored for the dense product
  int64_t stored_bytes = 0;  // the packed form
};

struct LinearKernelReport {
  std::vector<PackedLayer> layers;  // the packed ones
  int64_t dense_bytes = 0, stored_bytes = 0;
  // "csr on 72 of 72 pruned layers: 41.2 MB packed vs 75.5 MB dense (0.55x)"; for auto, the choices counted.
  std::string summary(const std::string& kernel_name) const;
};

// Packs every masked layer for options.kernel (dense clears the packed forms). Throws naming the layer when one
// cannot run the kernel (e.g. a mask that is not 2:4 asked to run as 2of4); layers packed before the failing
// one are cleared again, so the model is left as it was.
LinearKernelReport use_linear_kernel(const std::vector<std::pair<std::string, Linear*>>& layers,
                                     const LinearKernelOptions& options);
void clear_linear_kernels(const std::vector<std::pair<std::string, Linear*>>& layers);

}  // namespace pt::nn
