// libFuzzer harness: the safetensors reader (nn/safetensors.cpp). A file either fails to open with pt::Error or
// opens, and then every tensor it lists reads back (floating data as f32, other data as its own dtype) with the
// shape and byte count the header promised.
#include <cstddef>
#include <cstdint>

#include "nn/safetensors.h"
#include "tensor/error.h"
#include "tests/fuzz/input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pt::nn::SafetensorsFile file;
  try {
    file.open(pt::fuzz::write_input_file(data, size, ".safetensors"));
  } catch (const pt::Error&) {
    return 0;
  }
  for (const auto& name : file.names()) {
    const pt::nn::SafetensorsInfo info = file.info(name);
    const pt::DType as = pt::is_floating(info.dtype) ? pt::DType::f32 : info.dtype;
    const pt::Tensor t = file.read(name, as);
    if (t.shape() != info.shape || file.stored_bytes(name).size() != size_t(t.numel()) * pt::dtype_size(info.dtype))
      __builtin_trap();
  }
  return 0;
}
