// The HDF5 layout of a checkpoint (described in nn/checkpoint.h), internal to nn/: the pieces the whole-file
// functions (save_checkpoint, load_checkpoint) and the per-tensor ones (CheckpointWriter, CheckpointReader) share,
// so both read and write exactly one format.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nn/checkpoint.h"
#include "nn/hdf5_util.h"

namespace pt::nn::ckfmt {

using hdf5::H5Id;
using hdf5::Where;

// ---- writing ----
void write_attr(hid_t obj, const char* name, hid_t file_type, hid_t mem_type, const void* value, Where& where);
void write_string_attr(hid_t obj, const char* name, const std::string& value, Where& where);
void write_i64_attr(hid_t obj, const char* name, int64_t value, Where& where);
void write_shape_attr(hid_t obj, const char* name, const Shape& shape, Where& where);
// `host` is a contiguous CPU tensor already in its stored dtype (f32, f16 or u8). Returns the open dataset.
H5Id write_dataset(hid_t group, const std::string& name, const Tensor& host, hid_t half, const SaveOptions& o,
                   Where& where);
// Host copy in the stored dtype; f16 goes through pt's own round-to-nearest-even (not HDF5's conversion).
Tensor stored_form(const Tensor& t, DType stored);
// Compression drops the values where the mask is 0, so they must all be zero (+0 or -0; they load as +0).
void check_pruned_are_zero(const std::string& name, const Tensor& param, const Tensor& mask, const Where& where);
hid_t create_group(hid_t parent, const char* name, Where& where);
// One parameter into /parameters (and its mask, when defined, into /masks), dense or compressed as o asks;
// adds to the report's byte counts.
void write_parameter(hid_t params, hid_t masks, const std::string& name, const Tensor& value, const Tensor& mask,
                     hid_t half, const SaveOptions& o, SaveReport& report, Where& where);
// Every root attribute (format, version, configs, stage, step, RNG, metrics) and the optimizer group.
void write_root(hid_t file, const Checkpoint& c, bool compressed, hid_t half, const SaveOptions& o, Where& where);

// ---- reading ----
// One dataset as stored, with the attributes of the compressed form when it has them.
struct Stored {
  std::string name;
  Tensor data;                         // stored dtype and shape
  std::optional<Shape> dense_shape;    // a compressed parameter (sparse_format = "bitmask")
  std::optional<int64_t> packed_bits;  // a bit-packed mask
};
enum class Kind { parameters, masks, other };

// A group's datasets, in creation order when the writer tracked it (ours always does), else by name.
std::vector<std::string> dataset_names(hid_t group, const std::string& gpath, Where& where);
Stored read_stored(hid_t group, const std::string& gpath, const std::string& name, hid_t half, Kind kind, Where& where);
std::vector<Stored> read_group(hid_t file, const std::string& gpath, hid_t half, Kind kind, Where& where);
int64_t read_i64_attr(hid_t obj, const char* name, const char* on, Where& where);
// The root attributes (after checking format and version) into c; tensors untouched.
void read_root(hid_t file, const std::string& path, Checkpoint& c, Where& where);
// A compressed parameter and its bit-packed mask (m may be null: an error) back to dense tensors.
void densify_pair(Stored& p, Stored* m, Where& where);
// Every compressed parameter of a file densified, and no bit-packed mask left without one.
void densify(std::vector<Stored>& params, std::vector<Stored>& masks, Where& where);

}  // namespace pt::nn::ckfmt
