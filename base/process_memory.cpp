#include "base/process_memory.h"

#include <fstream>
#include <sstream>
#include <string>

namespace pt {

ProcessMemory process_memory() {
  ProcessMemory m;
  std::ifstream status("/proc/self/status");
  std::string line;
  // Lines such as "VmRSS:	  123456 kB".
  while (std::getline(status, line)) {
    int64_t* field = line.rfind("VmRSS:", 0) == 0 ? &m.resident_bytes
                     : line.rfind("VmHWM:", 0) == 0 ? &m.peak_resident_bytes
                                                    : nullptr;
    if (!field) continue;
    std::istringstream value(line.substr(6));
    int64_t kib = 0;
    if (value >> kib) *field = kib * 1024;
  }
  return m;
}

}  // namespace pt
