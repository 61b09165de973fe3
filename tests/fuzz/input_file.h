// The fuzz input as a file, for readers that take a path (safetensors, HDF5): one file per process in a private
// temporary folder, rewritten for every input.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace pt::fuzz {

// Writes the bytes to this process's input file and returns its path (aborts if the file cannot be written).
const std::string& write_input_file(const uint8_t* data, size_t size, const char* suffix);

}  // namespace pt::fuzz
