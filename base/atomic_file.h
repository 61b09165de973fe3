// Writing an output file atomically: the one recipe every writer in the project uses (checkpoints, safetensors,
// token caches, calibration windows, run records and results).
//
//   1. write a temporary file in the target's folder (so the rename below never crosses file systems)
//   2. fsync it (its bytes are on disk before its name is)
//   3. rename it over the target (readers see the old file or the new one, never a mix)
//   4. fsync the folder (the rename itself survives a power cut)
//
// A crash or an error before the rename leaves the target as it was. Writers that stream bytes use write();
// writers that open the file by name (HDF5) write to temp_path() themselves and then call commit().
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pt {

class AtomicFile {
 public:
  // Who may write `target` at the same time:
  //   one   the temporary is TARGET.tmp; a stale one left by a killed writer is simply overwritten
  //   many  each writer gets its own TARGET.<pid>.<n>.tmp (shared caches written by parallel processes);
  //         temporaries of writers that are no longer running are removed
  enum class Writers { one, many };

  explicit AtomicFile(std::string target, Writers writers = Writers::one);
  ~AtomicFile();  // without commit(): the temporary is removed, the target untouched
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  const std::string& target() const { return target_; }
  const std::string& temp_path() const { return temp_; }

  // Appends bytes to the temporary (created on the first call). Throws pt::Error naming the target.
  void write(const void* data, size_t bytes);
  void write(std::string_view text) { write(text.data(), text.size()); }

  // Steps 2-4; returns the size of the committed file. Throws pt::Error naming the target (which is then
  // untouched unless the rename itself happened and only the folder's fsync failed).
  int64_t commit();

 private:
  void open_temp();
  std::string target_, temp_;
  int fd_ = -1;
  bool committed_ = false;
};

// The whole recipe for a file whose bytes are in memory.
void write_file_atomic(const std::string& path, std::string_view bytes);

// Renames an existing, complete file over `to` (same folder) and fsyncs the folder: how a finished file that
// was written under a working name (e.g. checkpoint.h5 -> model.h5) becomes the final one.
void rename_durably(const std::string& from, const std::string& to);

// fsync of a folder (after a rename, create or remove in it). Throws pt::Error naming the folder.
void fsync_folder(const std::string& folder);

}  // namespace pt
