// HDF5 checkpoints: one file per checkpoint holding a model's parameters (by Hugging Face name), its pruning
// masks, optional AdamW state, and everything a stopped run needs to resume (configs, stage counters, RNG state,
// metrics so far).
//
// Layout (HDF5 >= 1.10 format, readable with h5py / h5dump; metadata checksummed, so damage is detected):
//   /parameters/<name>   f32, or a real IEEE half type when SaveOptions::fp16_parameters; chunked with a
//                        Fletcher-32 checksum (and gzip + shuffle when asked)
//   /masks/<name>        u8 (0/1), keyed by the parameter it masks, same shape
//   /optimizer/m/<name>, /optimizer/v/<name>   f32; attribute "step" (int64) on /optimizer
//   root attributes: format, format_version, model_config (JSON), run_config (text), stage, stage_index, step,
//                    rng_seed, rng_offset (uint64), metrics (JSON); strings are fixed-length UTF-8 (h5py: bytes)
// Groups track link creation order, so parameters load back in the order they were saved.
//
// Compressed pruned parameters (SaveOptions::compress_pruned): every parameter that has a mask is stored as its
// kept values plus its mask as packed bits; parameters without a mask and the optimizer state are stored as above.
// A dataset is in this form exactly when it has the attribute sparse_format (parameters) or packed_bits (masks).
// Let n = product(dense_shape) and i = 0..n-1 index the dense tensor in row-major (C) order:
//   /parameters/<name>   1-D, the values at the positions where the mask is 1, in increasing i; element type,
//                        chunking and filters as for the other parameters (no chunks when it holds no value).
//                        Attributes: sparse_format = "bitmask" (fixed-length string; h5py: b"bitmask") and
//                        dense_shape (int64 array, the parameter's shape; empty for a scalar)
//   /masks/<name>        1-D u8 of length ceil(n / 8): mask element i is bit (i % 8) of byte i / 8, least
//                        significant bit first; the bits past n in the last byte are 0. Attribute packed_bits = n
//                        (int64). The number of values in /parameters/<name> equals the number of bits set.
//   Pruned positions (mask 0) load as +0.0: saving refuses a weight that is nonzero there (a -0.0 counts as zero and
//   comes back as +0.0). Decoding with numpy, for k a parameter name and f an open h5py.File:
//     p = f["parameters/" + k]; shape = tuple(p.attrs["dense_shape"]); n = int(np.prod(shape))
//     keep = np.unpackbits(f["masks/" + k][:], bitorder="little")[:n].astype(bool)
//     w = np.zeros(n, p.dtype); w[keep] = p[:]; w = w.reshape(shape); mask = keep.astype(np.uint8).reshape(shape)
// format_version is 2 when the file holds compressed parameters and 1 otherwise (so builds that predate compression
// still read uncompressed files, and refuse compressed ones with a clear message); this build reads both.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace pt::nn {

// Files with compressed parameters are version 2; all others are written as version 1. Both are read.
inline constexpr int64_t kCheckpointFormatVersion = 2;     // newest format (compressed parameters)
inline constexpr int64_t kCheckpointMinFormatVersion = 1;  // oldest format read
inline constexpr const char* kCheckpointFormatName = "prune-and-tune checkpoint";

// AdamW moments per parameter (same names and shapes as the parameters they belong to) and the step count.
struct OptimizerState {
  std::map<std::string, Tensor> m, v;
  int64_t step = 0;
};

struct Checkpoint {
  std::vector<std::pair<std::string, Tensor>> parameters;  // HF names, e.g. "model.decoder.layers.0.fc1.weight"
  std::map<std::string, Tensor> masks;                     // u8, keyed by parameter name
  std::optional<OptimizerState> optimizer;

  std::string model_config = "{}";  // JSON
  std::string run_config;           // the run's full resolved configuration text
  std::string stage;                // e.g. "retrain"
  int64_t stage_index = 0;
  int64_t step = 0;
  Generator rng;               // seed + offset
  std::string metrics = "{}";  // JSON

  const Tensor* find_parameter(const std::string& name) const;  // nullptr when absent
};

struct SaveOptions {
  bool fp16_parameters = false;  // store parameters as IEEE half (masks stay u8, optimizer state f32)
  int gzip_level = 0;            // 0 = no compression; 1..9 = gzip with shuffle (chunked)
  bool checksums = true;         // Fletcher-32 per chunk, so damaged tensor data fails to load instead of loading
  bool compress_pruned = false;  // masked parameters as kept values + bit-packed mask (layout above); lossless,
                                 // and refused (nothing written) when a weight is nonzero where its mask is 0
};

// What save_checkpoint wrote. The parameter byte counts cover the masked parameters only and are raw sizes in the
// stored dtype, before gzip (file_bytes is the real size, gzip and HDF5 metadata included).
struct SaveReport {
  int64_t file_bytes = 0;             // size of the checkpoint file
  int64_t parameter_bytes_dense = 0;  // the masked parameters' values uncompressed: numel * (4, or 2 with fp16)
  int64_t parameter_bytes_stored = 0; // stored for them: values + mask bytes; kept * (4 or 2) + ceil(numel / 8)
                                      // each when compressed, numel * (4 or 2) + numel (u8 mask) when not
  int64_t compressed_parameters = 0;  // parameters stored in the compressed form
};

struct LoadOptions {
  bool keep_fp16 = false;      // fp16-stored parameters load as f16 tensors instead of f32
  bool load_optimizer = true;  // false skips /optimizer (its tensors are twice the model)
};

// Writes atomically (base/atomic_file.h): PATH.tmp beside PATH, fsynced, renamed over PATH, folder fsynced.
// The previous file at PATH is untouched until the rename; on any failure the .tmp is removed and pt::Error
// is thrown. Tensors may live on any device and in any floating dtype (converted on the host).
SaveReport save_checkpoint(const std::string& path, const Checkpoint& ckpt, const SaveOptions& options = {});

// Reads and validates everything (file, format + version, attributes, every dataset's rank/shape/dtype,
// masks and optimizer state consistent with the parameters). Tensors come back on the CPU, contiguous, and dense:
// a compressed parameter comes back in its dense shape with exact zeros where pruned, its mask as u8 0/1.
// A truncated or damaged file throws "checkpoint PATH is truncated or corrupt (...)"; nothing is half-loaded.
Checkpoint load_checkpoint(const std::string& path, const LoadOptions& options = {});

// Compares a loaded checkpoint with what a model expects. Throws pt::Error naming the tensor on a missing
// tensor, an unexpected tensor, or a shape mismatch (both shapes). `masks`, when given, is checked the same way.
using ExpectedTensors = std::vector<std::pair<std::string, Shape>>;
void validate_checkpoint(const Checkpoint& ckpt, const ExpectedTensors& parameters,
                         const std::optional<ExpectedTensors>& masks = std::nullopt);

}  // namespace pt::nn
