// libFuzzer harness: the HDF5 checkpoint reader (nn/checkpoint.cpp). A file either fails to load with pt::Error
// or loads, and then what it holds is self-consistent: every mask and optimizer moment has the shape of its
// parameter, and the model_config and metrics attributes are JSON.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "nn/checkpoint.h"
#include "tensor/error.h"
#include "tests/fuzz/input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pt::nn::Checkpoint ck;
  try {
    ck = pt::nn::load_checkpoint(pt::fuzz::write_input_file(data, size, ".h5"));
  } catch (const pt::Error&) {
    return 0;
  }
  for (const auto& [name, mask] : ck.masks) {
    const pt::Tensor* p = ck.find_parameter(name);
    if (!p || p->shape() != mask.shape()) __builtin_trap();
  }
  if (ck.optimizer)
    for (const auto* moments : {&ck.optimizer->m, &ck.optimizer->v})
      for (const auto& [name, t] : *moments) {
        const pt::Tensor* p = ck.find_parameter(name);
        if (!p || p->shape() != t.shape()) __builtin_trap();
      }
  if (!nlohmann::json::accept(ck.model_config) || !nlohmann::json::accept(ck.metrics)) __builtin_trap();
  return 0;
}
