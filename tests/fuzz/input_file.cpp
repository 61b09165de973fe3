#include "tests/fuzz/input_file.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace pt::fuzz {

namespace fs = std::filesystem;

namespace {

constexpr const char* kPrefix = "pt-fuzz-input-";

// libFuzzer's fork mode ends its jobs without running destructors, so each process also removes the input files
// of processes that no longer exist (only names this code makes: pt-fuzz-input-<pid>.<suffix>).
void remove_stale_inputs(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(kPrefix, 0) != 0) continue;
    const std::string pid = name.substr(std::string(kPrefix).size(), name.find('.') - std::string(kPrefix).size());
    if (!pid.empty() && pid.find_first_not_of("0123456789") == std::string::npos && !fs::exists("/proc/" + pid))
      fs::remove(e.path(), ec);
  }
}

struct InputFile {
  std::string path;
  explicit InputFile(const char* suffix) {
    const fs::path dir = fs::temp_directory_path();
    remove_stale_inputs(dir);
    path = (dir / (kPrefix + std::to_string(::getpid()) + suffix)).string();
  }
  ~InputFile() { std::remove(path.c_str()); }
};

}  // namespace

const std::string& write_input_file(const uint8_t* data, size_t size, const char* suffix) {
  static const InputFile file(suffix);  // one format per harness
  std::FILE* f = std::fopen(file.path.c_str(), "wb");
  if (!f || std::fwrite(data, 1, size, f) != size || std::fclose(f) != 0) std::abort();
  return file.path;
}

}  // namespace pt::fuzz
