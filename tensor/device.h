// Devices. One GPU at most; `auto` resolves to cuda only when a device is really usable.
#pragma once
#include <string>

namespace pt {

enum class Device : uint8_t { cpu, cuda };

const char* device_name(Device d);
bool cuda_is_available();          // false in a CPU-only build, or when no driver/device answers
Device parse_device(const std::string& name);  // "cpu" | "cuda" | "auto"; cuda without a GPU throws

}  // namespace pt
