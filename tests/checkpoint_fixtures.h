// Shared by the HDF5 checkpoint suites (test_checkpoint.cpp, test_checkpoint_compressed.cpp): checkpoints with
// every kind of content, pruned ones, expected save reports, and direct HDF5 edits that build files this writer
// would refuse to produce. Header-only: each suite gets its own copy in an anonymous namespace.
#pragma once
#include <gtest/gtest.h>
#include <hdf5.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>
#include <thread>

#include "nn/checkpoint.h"
#include "tests/test_util.h"


namespace fs = std::filesystem;
using namespace pt;
using namespace pt::nn;
using pt::test::expect_error;

namespace pt::test::checkpoint_fixtures {

using pt::test::same_bytes;

using CheckpointTest = pt::test::TempDirTest;

inline Tensor random_mask(const Shape& shape, uint64_t seed) {
  Tensor r = pt::test::random_tensor(shape, seed, 0.0, 1.0), m = Tensor::empty(shape, DType::u8);
  for (int64_t i = 0; i < r.numel(); ++i) m.data<uint8_t>()[i] = r.data<float>()[i] < 0.5f;
  return m;
}

// A small OPT-like checkpoint with every kind of content, parameters deliberately not in name order.
inline Checkpoint make_checkpoint(uint64_t seed) {
  Checkpoint c;
  auto param = [&](const std::string& name, const Shape& shape) {
    c.parameters.emplace_back(name, pt::test::random_tensor(shape, seed++, -2.0, 2.0));
  };
  param("model.decoder.layers.0.fc1.weight", {32, 16});
  param("model.decoder.layers.0.fc1.bias", {32});
  param("model.decoder.embed_tokens.weight", {50, 16});
  param("lm_head.scale", {});  // rank 0
  c.parameters.emplace_back("model.empty", Tensor::empty({0, 4}));
  // Values whose bits must survive: -0, inf, NaN, a subnormal.
  float* w = c.parameters[0].second.data<float>();
  w[0] = -0.0f, w[1] = std::numeric_limits<float>::infinity(), w[2] = std::nanf("");
  w[3] = std::numeric_limits<float>::denorm_min();
  c.masks["model.decoder.layers.0.fc1.weight"] = random_mask({32, 16}, seed++);
  OptimizerState opt;
  for (int i = 0; i < 2; ++i) {
    const auto& [name, t] = c.parameters[i];
    opt.m[name] = pt::test::random_tensor(t.shape(), seed++, -1e-3, 1e-3);
    opt.v[name] = pt::test::random_tensor(t.shape(), seed++, 0.0, 1e-6);
  }
  opt.step = 17;
  c.optimizer = opt;
  c.model_config = R"({"hidden_size": 16, "num_hidden_layers": 1, "preset": "tiny"})";
  c.run_config = "[model]\npreset = tiny\n# café ✓ \"quoted\" \\ backslash\n[prune]\nsparsity = 0.5\n";
  c.stage = "retrain";
  c.stage_index = 3;
  c.step = 1234;
  c.rng.seed = 0xDEADBEEFCAFEBABEull;  // above 2^63: must stay unsigned
  c.rng.offset = (1ull << 40) + 7;
  c.metrics = R"({"rows": [{"sparsity": 0.5, "perplexity": 27.66}]})";
  return c;
}

inline void expect_same(const Checkpoint& a, const Checkpoint& b) {
  ASSERT_EQ(a.parameters.size(), b.parameters.size());
  for (size_t i = 0; i < a.parameters.size(); ++i) {
    EXPECT_EQ(a.parameters[i].first, b.parameters[i].first);  // order preserved
    EXPECT_TRUE(same_bytes(a.parameters[i].second, b.parameters[i].second)) << a.parameters[i].first;
  }
  ASSERT_EQ(a.masks.size(), b.masks.size());
  for (const auto& [name, m] : a.masks) EXPECT_TRUE(same_bytes(m, b.masks.at(name))) << name;
  ASSERT_EQ(a.optimizer.has_value(), b.optimizer.has_value());
  if (a.optimizer) {
    EXPECT_EQ(a.optimizer->step, b.optimizer->step);
    ASSERT_EQ(a.optimizer->m.size(), b.optimizer->m.size());
    for (const auto& [name, t] : a.optimizer->m) EXPECT_TRUE(same_bytes(t, b.optimizer->m.at(name))) << name;
    for (const auto& [name, t] : a.optimizer->v) EXPECT_TRUE(same_bytes(t, b.optimizer->v.at(name))) << name;
  }
  EXPECT_EQ(a.model_config, b.model_config);
  EXPECT_EQ(a.run_config, b.run_config);
  EXPECT_EQ(a.stage, b.stage);
  EXPECT_EQ(a.stage_index, b.stage_index);
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.rng.seed, b.rng.seed);
  EXPECT_EQ(a.rng.offset, b.rng.offset);
  EXPECT_EQ(a.metrics, b.metrics);
}

inline std::string run_command(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(("(" + cmd + ") 2>&1").c_str(), "r");
  if (!p) return out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  ::pclose(p);
  return out;
}

// Direct HDF5 edits, to build files that this writer would refuse to produce.
template <class F> void edit_file(const std::string& file, F&& f) {
  hid_t id = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(id, 0);
  f(id);
  ASSERT_GE(H5Fclose(id), 0);
}
inline void unlink_in(const std::string& file, const char* name) {
  edit_file(file, [&](hid_t f) { EXPECT_GE(H5Ldelete(f, name, H5P_DEFAULT), 0); });
}

inline std::string file_bytes(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline int64_t format_version_of(const std::string& file) {
  int64_t v = -1;
  edit_file(file, [&](hid_t f) {
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    EXPECT_GE(H5Aread(a, H5T_NATIVE_INT64, &v), 0);
    H5Aclose(a);
  });
  return v;
}

// ---- pruned weights --------------------------------------------------------------------------------------

// Exactly round(sparsity * numel) positions pruned at random: mask 0 there and the weight +0.0.
inline void prune_exactly(Tensor& w, Tensor& m, double sparsity, uint64_t seed) {
  m = Tensor::empty(w.shape(), DType::u8);
  const int64_t n = w.numel(), pruned = std::llround(sparsity * double(n));
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
  for (int64_t i = 0; i < n; ++i) m.data<uint8_t>()[i] = 1;
  for (int64_t k = 0; k < pruned; ++k) {
    const int64_t i = order[size_t(k)];
    m.data<uint8_t>()[i] = 0, w.data<float>()[i] = 0.0f;
  }
}

inline Tensor& param_of(Checkpoint& c, const std::string& name) {
  for (auto& [n, t] : c.parameters)
    if (n == name) return t;
  throw std::runtime_error("no parameter " + name);
}

const char* const kQ = "model.decoder.layers.0.self_attn.q_proj.weight";

// make_checkpoint with masks at `sparsity` on a matrix (keeping the -0 / inf / NaN / subnormal values unless all is
// pruned), an odd-shaped 7x13 matrix, a 1-D bias, a scalar and an empty tensor; the embedding stays unmasked.
inline Checkpoint make_pruned_checkpoint(uint64_t seed, double sparsity) {
  Checkpoint c = make_checkpoint(seed);
  c.parameters.emplace_back(kQ, pt::test::random_tensor({7, 13}, seed + 100, -2.0, 2.0));
  c.masks.clear();
  uint64_t s = seed + 200;
  for (const char* name : {"model.decoder.layers.0.fc1.weight", "model.decoder.layers.0.fc1.bias", "lm_head.scale",
                           "model.empty", kQ}) {
    Tensor& w = param_of(c, name);
    Tensor original = w.clone();
    prune_exactly(w, c.masks[name], sparsity, s++);
    if (std::string(name) == "model.decoder.layers.0.fc1.weight" && sparsity < 1.0)
      for (int i = 0; i < 4; ++i) {  // the special values stay kept
        if (c.masks[name].data<uint8_t>()[i]) continue;
        c.masks[name].data<uint8_t>()[i] = 1, w.data<float>()[i] = original.data<float>()[i];
      }
  }
  return c;
}

inline SaveReport expected_report(const Checkpoint& c, bool fp16, bool compressed) {
  SaveReport r;
  const int64_t elem = fp16 ? 2 : 4;
  for (const auto& [name, m] : c.masks) {
    const int64_t n = m.numel(), kept = std::count(m.data<uint8_t>(), m.data<uint8_t>() + n, uint8_t(1));
    r.parameter_bytes_dense += n * elem;
    r.parameter_bytes_stored += compressed ? kept * elem + (n + 7) / 8 : n * elem + n;
    r.compressed_parameters += compressed;
  }
  return r;
}

inline void expect_report(const SaveReport& got, const SaveReport& want, const std::string& file) {
  EXPECT_EQ(got.file_bytes, int64_t(fs::file_size(file)));
  EXPECT_EQ(got.parameter_bytes_dense, want.parameter_bytes_dense);
  EXPECT_EQ(got.parameter_bytes_stored, want.parameter_bytes_stored);
  EXPECT_EQ(got.compressed_parameters, want.compressed_parameters);
}

// Direct HDF5 writes for the corruption tests (contiguous 1-D datasets, no filters).
inline void put_dataset(hid_t f, const std::string& name, hid_t type, const void* data, hsize_t n) {
  if (H5Lexists(f, name.c_str(), H5P_DEFAULT) > 0) {
    EXPECT_GE(H5Ldelete(f, name.c_str(), H5P_DEFAULT), 0);
  }
  hid_t space = H5Screate_simple(1, &n, nullptr);
  hid_t d = H5Dcreate2(f, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  EXPECT_GE(d, 0);
  if (n > 0) {
    EXPECT_GE(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0);
  }
  H5Dclose(d), H5Sclose(space);
}
inline void put_attr(hid_t f, const std::string& object, const char* name, hid_t type, const void* value, hsize_t n = 0) {
  hid_t obj = H5Oopen(f, object.c_str(), H5P_DEFAULT);
  EXPECT_GE(obj, 0);
  if (H5Aexists(obj, name) > 0) {
    EXPECT_GE(H5Adelete(obj, name), 0);
  }
  hid_t space = n == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, nullptr);
  hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  EXPECT_GE(H5Awrite(a, type, value), 0);
  H5Aclose(a), H5Sclose(space), H5Oclose(obj);
}
inline void put_string_attr(hid_t f, const std::string& object, const char* name, const std::string& v) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, v.size());
  put_attr(f, object, name, t, v.data());
  H5Tclose(t);
}
inline std::vector<uint8_t> read_bytes(hid_t f, const std::string& name) {
  hid_t d = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
  hid_t space = H5Dget_space(d);
  std::vector<uint8_t> out(size_t(H5Sget_simple_extent_npoints(space)));
  EXPECT_GE(H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), 0);
  H5Sclose(space), H5Dclose(d);
  return out;
}
inline void write_bytes(hid_t f, const std::string& name, const std::vector<uint8_t>& bytes) {
  hid_t d = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
  EXPECT_GE(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()), 0);
  H5Dclose(d);
}

}  // namespace pt::test::checkpoint_fixtures
