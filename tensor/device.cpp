#include "tensor/device.h"

#include "tensor/error.h"

#if PT_CUDA
#include <cuda_runtime.h>
#endif

namespace pt {

const char* device_name(Device d) { return d == Device::cuda ? "cuda" : "cpu"; }

bool cuda_is_available() {
#if PT_CUDA
  // Decided once: a binary built with CUDA must still run on a machine with no driver or GPU.
  static const bool available = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
      cudaGetLastError();  // clear the sticky "no driver" error
      return false;
    }
    return true;
  }();
  return available;
#else
  return false;
#endif
}

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::cpu;
  if (name == "auto") return cuda_is_available() ? Device::cuda : Device::cpu;
  if (name == "cuda") {
#if PT_CUDA
    PT_CHECK(cuda_is_available(), "device 'cuda' requested but no usable CUDA device was found (use cpu or auto)");
    return Device::cuda;
#else
    PT_FAIL("device 'cuda' requested but this build has no CUDA support (rebuild with a CUDA toolkit, or use cpu)");
#endif
  }
  PT_FAIL("unknown device '", name, "' (allowed: auto, cpu, cuda)");
}

}  // namespace pt
