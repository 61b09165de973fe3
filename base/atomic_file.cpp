#include "base/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "base/error.h"

namespace pt {

namespace fs = std::filesystem;

namespace {

std::string folder_of(const std::string& path) {
  const std::string folder = fs::path(path).parent_path().string();
  return folder.empty() ? "." : folder;
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// TARGET.<pid>.<n>.tmp of a process that no longer runs: a writer killed before its rename.
void remove_dead_writers_temporaries(const std::string& target) {
  const std::string prefix = fs::path(target).filename().string() + ".";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder_of(target), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() <= prefix.size() + 4 || name.compare(0, prefix.size(), prefix) != 0 ||
        name.compare(name.size() - 4, 4, ".tmp") != 0)
      continue;
    const std::string_view middle = std::string_view(name).substr(prefix.size(), name.size() - prefix.size() - 4);
    const size_t dot = middle.find('.');
    if (dot == std::string_view::npos || !all_digits(middle.substr(0, dot)) || !all_digits(middle.substr(dot + 1))) continue;
    const long pid = std::strtol(std::string(middle.substr(0, dot)).c_str(), nullptr, 10);
    if (pid > 0 && ::kill(pid_t(pid), 0) != 0 && errno == ESRCH) fs::remove(entry.path(), ec);
  }
}

}  // namespace

AtomicFile::AtomicFile(std::string target, Writers writers) : target_(std::move(target)) {
  PT_CHECK(!target_.empty(), "atomic write: no file name given");
  if (writers == Writers::one) {
    temp_ = target_ + ".tmp";
  } else {
    static std::atomic<unsigned> counter{0};
    remove_dead_writers_temporaries(target_);
    temp_ = target_ + "." + std::to_string(::getpid()) + "." + std::to_string(counter++) + ".tmp";
  }
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (committed_) return;
  // Truncate first: a writer that failed mid-way (HDF5 after a failed flush) may still hold the file open, and its
  // blocks would stay allocated until the process exits.
  struct stat st;
  if (::lstat(temp_.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    (void)!::truncate(temp_.c_str(), 0);
    ::unlink(temp_.c_str());
  }
}

void AtomicFile::open_temp() {
  fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  PT_CHECK(fd_ >= 0, "cannot write ", target_, ": cannot create ", temp_, " (", std::strerror(errno), ")");
}

void AtomicFile::write(const void* data, size_t bytes) {
  PT_CHECK(!committed_, "cannot write ", target_, ": already committed");
  if (fd_ < 0) open_temp();
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd_, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    PT_CHECK(n > 0, "cannot write ", target_, " (", n < 0 ? std::strerror(errno) : "nothing written", ")");
    p += n;
    bytes -= size_t(n);
  }
}

int64_t AtomicFile::commit() {
  PT_CHECK(!committed_, "cannot write ", target_, ": already committed");
  if (fd_ < 0) {
    // Written by name (HDF5), or an empty file that write() never created.
    fd_ = ::open(temp_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0 && errno == ENOENT) open_temp();
    PT_CHECK(fd_ >= 0, "cannot write ", target_, ": cannot open ", temp_, " (", std::strerror(errno), ")");
  }
  struct stat st;
  PT_CHECK(::fsync(fd_) == 0, "cannot write ", target_, ": fsync of ", temp_, " failed (", std::strerror(errno), ")");
  PT_CHECK(::fstat(fd_, &st) == 0, "cannot write ", target_, ": cannot stat ", temp_, " (", std::strerror(errno), ")");
  const int rc = ::close(fd_);
  fd_ = -1;
  PT_CHECK(rc == 0, "cannot write ", target_, ": close of ", temp_, " failed (", std::strerror(errno), ")");
  PT_CHECK(::rename(temp_.c_str(), target_.c_str()) == 0, "cannot write ", target_, ": rename from ", temp_, " failed (",
           std::strerror(errno), ")");
  committed_ = true;
  fsync_folder(folder_of(target_));
  return int64_t(st.st_size);
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFile file(path);
  file.write(bytes);
  file.commit();
}

void rename_durably(const std::string& from, const std::string& to) {
  PT_CHECK(::rename(from.c_str(), to.c_str()) == 0, "cannot rename ", from, " to ", to, " (", std::strerror(errno), ")");
  fsync_folder(folder_of(to));
}

void fsync_folder(const std::string& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  PT_CHECK(fd >= 0, "cannot open folder ", folder, " to fsync it (", std::strerror(errno), ")");
  const int rc = ::fsync(fd), err = errno;
  ::close(fd);
  PT_CHECK(rc == 0, "fsync of folder ", folder, " failed (", std::strerror(err), ")");
}

}  // namespace pt
