// Small text files (run records, results) written atomically: a temporary file in the same folder, flushed
// and fsynced, renamed over the target, then the folder fsynced. A crash leaves the old file or the new one.
#pragma once
#include <string>

namespace pt::app {

void write_file_atomic(const std::string& path, const std::string& bytes);  // throws pt::Error naming the path

}  // namespace pt::app
