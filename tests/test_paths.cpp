#include "tests/test_paths.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <vector>

namespace pt::test {
namespace {

namespace fs = std::filesystem;

fs::path executable_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::current_path() : exe.parent_path();
}

// The folder an environment variable names, absolute; "" when it is unset or empty.
std::string from_env(const char* variable) {
  const char* env = std::getenv(variable);
  return env && *env ? fs::absolute(env).lexically_normal().string() : std::string();
}

void add_self_and_parents(fs::path dir, std::vector<fs::path>& out) {
  for (; !dir.empty(); dir = dir.parent_path()) {
    out.push_back(dir);
    if (dir == dir.root_path()) break;
  }
}

}  // namespace

const std::string& source_dir() {
  static const std::string dir = [] {
    if (std::string env = from_env("PT_SOURCE_DIR"); !env.empty()) return env;
    std::vector<fs::path> candidates;
    add_self_and_parents(fs::current_path(), candidates);
    add_self_and_parents(executable_dir(), candidates);
    for (const fs::path& c : candidates)
      if (fs::is_directory(c / "tests" / "golden")) return c.lexically_normal().string();
    // Fatal: golden fixtures, configs and data are read by cases all over the suite.
    std::fprintf(stderr, "pt_tests: cannot find the repository (a folder holding tests/golden/) above the working "
                         "directory or the executable; run from the repository root or set PT_SOURCE_DIR\n");
    std::exit(2);
  }();
  return dir;
}

const std::string& app_dir() {
  static const std::string dir = [] {
    if (std::string env = from_env("PT_APP_DIR"); !env.empty()) return env;
    const fs::path exe = executable_dir();
    for (const fs::path& c : {exe, exe.parent_path()})
      if (fs::exists(c / "train_prune")) return c.lexically_normal().string();
    // Not fatal: only the end-to-end cases launch apps, and they fail naming the path they tried.
    std::fprintf(stderr, "pt_tests: no train_prune beside %s or in its parent; set PT_APP_DIR\n", exe.c_str());
    return exe.string();
  }();
  return dir;
}

const std::string& work_dir() {
  static const std::string dir = [] {
    std::string env = from_env("PT_TEST_WORK_DIR");
    if (env.empty()) return app_dir();
    fs::create_directories(env);
    return env;
  }();
  return dir;
}

}  // namespace pt::test
