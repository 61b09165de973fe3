// Switching a model's pruned Linear layers between the dense product and a packed sparse kernel for inference
// (`[run] linear_kernel = dense|masked|csr|bitmap|2of4|auto`, sparse/packed_linear.h). Only layers that carry a
// mask are packed: an unpruned layer has nothing to skip and stays dense under every kernel.
//
// For inference only (opt_eval --linear-kernel, train_prune's evaluations), release_dense also frees each packed
// layer's dense weight and mask (Linear::release_dense_weight) and hands the freed blocks back to the system,
// so the process really shrinks; clearing the kernels (or packing again) restores them bit for bit.
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
  bool release_dense = false;              // free the dense weights of the packed layers (inference only)
};

struct PackedLayer {
  std::string name;
  std::string kernel;        // "csr", or for auto "decode csr, prefill dense"
  int64_t dense_bytes = 0;   // the weight as stored for the dense product
  int64_t stored_bytes = 0;  // the packed form
  int64_t released_bytes = 0;  // dense weight and mask freed (release_dense)
};

struct LinearKernelReport {
  std::vector<PackedLayer> layers;  // the packed ones
  int64_t dense_bytes = 0, stored_bytes = 0, released_bytes = 0;
  // "csr on 72 pruned layers: 41.2 MB packed vs 75.5 MB dense (0.55x)"; for auto, the choices counted; with
  // release_dense, "; released 94.4 MB of dense weights and masks".
  std::string summary(const std::string& kernel_name) const;
};

// Packs every masked layer for options.kernel (dense clears the packed forms), then, with release_dense, releases
// the dense weights. Throws naming the layer when one cannot run the kernel (e.g. a mask that is not 2:4 asked to
// run as 2of4); layers packed before the failing one are cleared again, so the model is left as it was.
LinearKernelReport use_linear_kernel(const std::vector<std::pair<std::string, Linear*>>& layers,
                                     const LinearKernelOptions& options);
// Drops every packed form, restoring released dense weights and masks first.
void clear_linear_kernels(const std::vector<std::pair<std::string, Linear*>>& layers);

}  // namespace pt::nn
