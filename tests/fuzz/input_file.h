// The fuzz input as a file, for readers that take a path (safetensors, HDF5, INI): one file per process in the
// temporary folder, rewritten for every input. (An in-memory memfd would leave nothing behind, but HDF5 does not
// open /proc/self/fd paths.)
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace pt::fuzz {

// Writes the bytes to this process's input file (named with `suffix`) and returns its path (aborts if the file
// cannot be written).
const std::string& write_input_file(const uint8_t* data, size_t size, const char* suffix);

}  // namespace pt::fuzz
