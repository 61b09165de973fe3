// Checkpoints written and read one tensor at a time, in the format of nn/checkpoint.h, so a model larger than
// memory is saved layer by layer as its layers are finished and read back one dataset at a time.
//
// HDF5 (Debian's serial build) is not thread-safe: every call of these classes, and of save_checkpoint /
// load_checkpoint, holds one process-wide lock, so a writer on one thread and a reader on another are safe.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/checkpoint.h"

namespace pt::nn {

class CheckpointWriter {
 public:
  // Creates PATH's temporary beside it; PATH itself is untouched until commit().
  CheckpointWriter(const std::string& path, const SaveOptions& options = {});
  ~CheckpointWriter();  // without commit(): the temporary is removed
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Appends a parameter (any device, any floating dtype) and, when defined, its u8 0/1 keep-mask of the same
  // shape. Parameters load back in the order they were added. Errors name the file and the tensor.
  void add_parameter(const std::string& name, const Tensor& value, const Tensor& mask = {});
  // Writes the root attributes and the optimizer state of `attributes` (its parameters and masks are ignored:
  // they were added one by one), closes the file and renames it over PATH (base/atomic_file.h).
  SaveReport commit(const Checkpoint& attributes);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class CheckpointReader {
 public:
  // Opens PATH and checks what load_checkpoint checks first (a checkpoint, a version this build reads, its root
  // attributes); datasets are read on demand. Errors as load_checkpoint's.
  explicit CheckpointReader(const std::string& path);
  ~CheckpointReader();
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;

  const std::string& path() const;
  const Checkpoint& attributes() const;               // root attributes only (no tensors)
  const std::vector<std::string>& parameter_names() const;  // in the file's order
  bool has_parameter(const std::string& name) const;
  bool has_mask(const std::string& name) const;

  struct Parameter {
    Tensor value;  // dense, CPU, contiguous: f32 (f16 when stored so and keep_fp16)
    Tensor mask;   // u8 0/1 of the same shape, undefined when the parameter has none
  };
  // One parameter and its mask, compressed ones densified (with the same consistency checks as load_checkpoint).
  Parameter read(const std::string& name, bool keep_fp16 = false) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pt::nn
