// The memory this process holds, as the kernel counts it (/proc/self/status): the resident set now (VmRSS) and
// its peak since the process started (VmHWM). What `opt_eval` reports, and what the tests of released packed
// weights read. Linux only; elsewhere both are -1.
#pragma once
#include <cstdint>

namespace pt {

struct ProcessMemory {
  int64_t resident_bytes = -1;       // VmRSS
  int64_t peak_resident_bytes = -1;  // VmHWM
};

ProcessMemory process_memory();

}  // namespace pt
