// NVTX ranges for Nsight Systems. Compile to nothing without NVTX (CPU-only builds, PT_WITH_NVTX=OFF).
//   PT_NVTX_RANGE("prune/obs_sweep");   // scoped range named area/stage
//   PT_NVTX_FUNC();                      // range named after the enclosing function
#pragma once

#if PT_NVTX
#include <nvtx3/nvToolsExt.h>
namespace pt {
class NvtxRange {
 public:
  explicit NvtxRange(const char* name) { nvtxRangePushA(name); }
  ~NvtxRange() { nvtxRangePop(); }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};
}  // namespace pt
#define PT_NVTX_CAT2(a, b) a##b
#define PT_NVTX_CAT(a, b) PT_NVTX_CAT2(a, b)
#define PT_NVTX_RANGE(name) ::pt::NvtxRange PT_NVTX_CAT(pt_nvtx_range_, __LINE__)(name)
#define PT_NVTX_FUNC() PT_NVTX_RANGE(__func__)
#else
#define PT_NVTX_RANGE(name) ((void)0)
#define PT_NVTX_FUNC() ((void)0)
#endif
