#include "tests/fuzz/input_file.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace pt::fuzz {

namespace {
// The private folder, removed when the process ends normally.
struct InputFolder {
  std::string dir;
  InputFolder() : dir((std::filesystem::temp_directory_path() / "pt-fuzz-XXXXXX").string()) {
    if (!::mkdtemp(dir.data())) std::abort();
  }
  ~InputFolder() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};
}  // namespace

const std::string& write_input_file(const uint8_t* data, size_t size, const char* suffix) {
  static const InputFolder folder;
  static const std::string path = folder.dir + "/input" + suffix;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(data, 1, size, f) != size || std::fclose(f) != 0) std::abort();
  return path;
}

}  // namespace pt::fuzz
