#include "nn/linear_kernel.h"

#include <cstdio>
#include <map>

#include "tensor/cpu_caching_allocator.h"
#if PT_CUDA
#include "tensor/cuda/caching_allocator.h"
#endif

namespace pt::nn {

namespace {

std::string megabytes(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", double(bytes) / 1e6);
  return buf;
}

}  // namespace

std::string LinearKernelReport::summary(const std::string& kernel_name) const {
  if (layers.empty()) return kernel_name + ": no pruned layers, everything runs dense";
  std::string s = kernel_name + " on " + std::to_string(layers.size()) + " pruned layers: " + megabytes(stored_bytes) +
                  " packed vs " + megabytes(dense_bytes) + " dense";
  char ratio[32];
  std::snprintf(ratio, sizeof ratio, " (%.2fx)", dense_bytes > 0 ? double(stored_bytes) / double(dense_bytes) : 0.0);
  s += ratio;
  std::map<std::string, int> choices;
  for (const auto& l : layers) ++choices[l.kernel];
  if (choices.size() > 1 || (choices.size() == 1 && choices.begin()->first != kernel_name)) {
    s += ";";
    for (const auto& [k, n] : choices) s += " " + k + " ×" + std::to_string(n) + ",";
    s.pop_back();
  }
  if (released_bytes > 0) s += "; released " + megabytes(released_bytes) + " of dense weights and masks";
  return s;
}

LinearKernelReport use_linear_kernel(const std::vector<std::pair<std::string, Linear*>>& layers,
                                     const LinearKernelOptions& options) {
  LinearKernelReport report;
  const std::string name = sparse::linear_kernel_name(options.kernel);
  try {
    for (const auto& [layer_name, layer] : layers) {
      layer->set_packed_weight(nullptr);
      if (options.kernel == sparse::LinearKernel::dense || !layer->has_mask()) continue;
      const Tensor& w = layer->weight.data();
      const std::string what = layer_name + ".weight";
      PackedLayer info;
      info.name = layer_name;
      info.dense_bytes = int64_t(w.nbytes());
      std::shared_ptr<sparse::PackedLinearWeight> packed;
      if (options.kernel == sparse::LinearKernel::auto_select) {
        auto a = sparse::pack_fastest(w, layer->weight_mask, what, options.auto_options);
        info.kernel = a->describe();
        packed = a;
      } else {
        packed = sparse::pack_linear_weight(options.kernel, w, layer->weight_mask,
                                            sparse::default_packed_dtype(options.kernel, w.dtype(), w.device()), what);
        info.kernel = name;
      }
      info.stored_bytes = packed->stored_bytes();
      layer->set_packed_weight(std::move(packed));
      // Released as soon as its packed form exists, so the peak is the dense model plus one packed layer, not
      // plus all of them; a failure further on restores every released weight from its packed form (the catch).
      if (options.release_dense) {
        info.released_bytes = layer->release_dense_weight();
        report.released_bytes += info.released_bytes;
        // The freed blocks sit in the caching allocators until given back; give them back now.
        if (info.released_bytes > 0 && layer->packed_weight()->device() == Device::cpu) cpu::empty_cache();
#if PT_CUDA
        if (info.released_bytes > 0 && layer->packed_weight()->device() == Device::cuda) cuda::empty_cache();
#endif
      }
      report.dense_bytes += info.dense_bytes;
      report.stored_bytes += info.stored_bytes;
      report.layers.push_back(std::move(info));
    }
  } catch (...) {
    clear_linear_kernels(layers);
    throw;
  }
  return report;
}

void clear_linear_kernels(const std::vector<std::pair<std::string, Linear*>>& layers) {
  for (const auto& [name, layer] : layers) layer->set_packed_weight(nullptr);
}

}  // namespace pt::nn
