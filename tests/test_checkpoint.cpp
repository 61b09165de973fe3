// HDF5 checkpoints: bit-exact round trips (f32, fp16 storage, gzip, pruned weights compressed as kept values +
// packed mask bits), the on-disk layout as other tools see it (h5dump, h5py), truncated files failing cleanly, a
// writer killed mid-save leaving the previous checkpoint intact, failed saves overwriting nothing, and clear errors
// for foreign, mismatched or inconsistent files.
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

namespace {

using pt::test::same_bytes;

using CheckpointTest = pt::test::TempDirTest;

Tensor random_mask(const Shape& shape, uint64_t seed) {
  Tensor r = pt::test::random_tensor(shape, seed, 0.0, 1.0), m = Tensor::empty(shape, DType::u8);
  for (int64_t i = 0; i < r.numel(); ++i) m.data<uint8_t>()[i] = r.data<float>()[i] < 0.5f;
  return m;
}

// A small OPT-like checkpoint with every kind of content, parameters deliberately not in name order.
Checkpoint make_checkpoint(uint64_t seed) {
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

void expect_same(const Checkpoint& a, const Checkpoint& b) {
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

std::string run_command(const std::string& cmd) {
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
void unlink_in(const std::string& file, const char* name) {
  edit_file(file, [&](hid_t f) { EXPECT_GE(H5Ldelete(f, name, H5P_DEFAULT), 0); });
}

std::string file_bytes(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

int64_t format_version_of(const std::string& file) {
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
void prune_exactly(Tensor& w, Tensor& m, double sparsity, uint64_t seed) {
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

Tensor& param_of(Checkpoint& c, const std::string& name) {
  for (auto& [n, t] : c.parameters)
    if (n == name) return t;
  throw std::runtime_error("no parameter " + name);
}

const char* const kQ = "model.decoder.layers.0.self_attn.q_proj.weight";

// make_checkpoint with masks at `sparsity` on a matrix (keeping the -0 / inf / NaN / subnormal values unless all is
// pruned), an odd-shaped 7x13 matrix, a 1-D bias, a scalar and an empty tensor; the embedding stays unmasked.
Checkpoint make_pruned_checkpoint(uint64_t seed, double sparsity) {
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

SaveReport expected_report(const Checkpoint& c, bool fp16, bool compressed) {
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

void expect_report(const SaveReport& got, const SaveReport& want, const std::string& file) {
  EXPECT_EQ(got.file_bytes, int64_t(fs::file_size(file)));
  EXPECT_EQ(got.parameter_bytes_dense, want.parameter_bytes_dense);
  EXPECT_EQ(got.parameter_bytes_stored, want.parameter_bytes_stored);
  EXPECT_EQ(got.compressed_parameters, want.compressed_parameters);
}

// Direct HDF5 writes for the corruption tests (contiguous 1-D datasets, no filters).
void put_dataset(hid_t f, const std::string& name, hid_t type, const void* data, hsize_t n) {
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
void put_attr(hid_t f, const std::string& object, const char* name, hid_t type, const void* value, hsize_t n = 0) {
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
void put_string_attr(hid_t f, const std::string& object, const char* name, const std::string& v) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, v.size());
  put_attr(f, object, name, t, v.data());
  H5Tclose(t);
}
std::vector<uint8_t> read_bytes(hid_t f, const std::string& name) {
  hid_t d = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
  hid_t space = H5Dget_space(d);
  std::vector<uint8_t> out(size_t(H5Sget_simple_extent_npoints(space)));
  EXPECT_GE(H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), 0);
  H5Sclose(space), H5Dclose(d);
  return out;
}
void write_bytes(hid_t f, const std::string& name, const std::vector<uint8_t>& bytes) {
  hid_t d = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
  EXPECT_GE(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()), 0);
  H5Dclose(d);
}

TEST_F(CheckpointTest, RoundTripIsBitExact) {
  const Checkpoint c = make_checkpoint(1);
  save_checkpoint(path("a.h5"), c);
  expect_same(c, load_checkpoint(path("a.h5")));
  EXPECT_FALSE(fs::exists(path("a.h5.tmp")));
  Checkpoint no_opt = load_checkpoint(path("a.h5"), {.keep_fp16 = false, .load_optimizer = false});
  EXPECT_FALSE(no_opt.optimizer.has_value());
  EXPECT_EQ(no_opt.parameters.size(), c.parameters.size());
  // Long text (HDF5 keeps small attributes in a 64 KiB object header; these go to dense storage), empty text,
  // and a checkpoint without optimizer state or masks.
  Checkpoint big_text = make_checkpoint(1);
  for (int i = 0; i < 20000; ++i) big_text.run_config += "key_" + std::to_string(i) + " = value\n";
  big_text.metrics = "[" + std::string(300000, ' ') + "]";
  big_text.stage.clear();
  big_text.optimizer.reset();
  big_text.masks.clear();
  ASSERT_GT(big_text.run_config.size(), 300000u);
  save_checkpoint(path("a.h5"), big_text);
  expect_same(big_text, load_checkpoint(path("a.h5")));
}

TEST_F(CheckpointTest, GzipOnAndOffBothLoad) {
  Checkpoint c = make_checkpoint(2);
  // A pruned weight (half zeros) compresses; sizes show the filter really ran.
  Tensor w = pt::test::random_tensor({256, 256}, 7);
  Tensor m = random_mask({256, 256}, 8);
  for (int64_t i = 0; i < w.numel(); ++i) w.data<float>()[i] *= float(m.data<uint8_t>()[i]);
  c.parameters.emplace_back("model.decoder.layers.0.self_attn.q_proj.weight", w);
  c.masks["model.decoder.layers.0.self_attn.q_proj.weight"] = m;
  uintmax_t plain_size = 0;
  for (int level : {0, 1, 6, 9}) {
    const std::string p = path("gz" + std::to_string(level) + ".h5");
    save_checkpoint(p, c, {.fp16_parameters = false, .gzip_level = level});
    expect_same(c, load_checkpoint(p));
    if (level == 0) plain_size = fs::file_size(p);
    else EXPECT_LT(fs::file_size(p), plain_size * 3 / 4) << "gzip level " << level;
  }
  save_checkpoint(path("plain.h5"), c, {.fp16_parameters = false, .gzip_level = 0, .checksums = false});
  expect_same(c, load_checkpoint(path("plain.h5")));  // contiguous layout, no filters
  expect_error([&] { save_checkpoint(path("bad.h5"), c, {.fp16_parameters = false, .gzip_level = 10}); },
               "gzip_level must be 0..9");
}

TEST_F(CheckpointTest, Fp16StorageMatchesFloatToF16) {
  Checkpoint c = make_checkpoint(3);
  // Rounding cases: a tie (1 + 2^-11), overflow to inf, a subnormal, underflow to zero, max half.
  float* w = c.parameters[0].second.data<float>();
  w[4] = 1.0f + 0x1p-11f, w[5] = 70000.0f, w[6] = 1e-6f, w[7] = 1e-9f, w[8] = 65504.0f, w[9] = -3.14159f;
  for (int level : {0, 4}) {
    save_checkpoint(path("h.h5"), c, {.fp16_parameters = true, .gzip_level = level});
    Checkpoint as_f32 = load_checkpoint(path("h.h5"));
    Checkpoint as_f16 = load_checkpoint(path("h.h5"), {.keep_fp16 = true, .load_optimizer = true});
    for (size_t i = 0; i < c.parameters.size(); ++i) {
      const Tensor& src = c.parameters[i].second;
      Tensor want16 = Tensor::empty(src.shape(), DType::f16), want32 = Tensor::empty(src.shape());
      for (int64_t k = 0; k < src.numel(); ++k) {
        uint16_t h = float_to_f16(src.data<float>()[k]);
        want16.data<half_t>()[k].bits = h;
        want32.data<float>()[k] = f16_to_float(h);
      }
      EXPECT_TRUE(same_bytes(as_f16.parameters[i].second, want16)) << c.parameters[i].first;
      EXPECT_TRUE(same_bytes(as_f32.parameters[i].second, want32)) << c.parameters[i].first;
    }
    as_f32.parameters = c.parameters;  // everything else (masks, f32 optimizer state, attributes) is exact
    expect_same(c, as_f32);
  }
}

TEST_F(CheckpointTest, H5dumpShowsNamesAndTypes) {
  if (run_command("command -v h5dump").empty()) GTEST_SKIP() << "h5dump not installed (Debian: hdf5-tools)";
  save_checkpoint(path("h.h5"), make_checkpoint(4), {.fp16_parameters = true, .gzip_level = 0});
  const std::string out = run_command("h5dump -H " + path("h.h5"));
  for (const char* part : {"GROUP \"parameters\"", "GROUP \"masks\"", "GROUP \"optimizer\"",
                           "DATASET \"model.decoder.layers.0.fc1.weight\"", "ATTRIBUTE \"format_version\"",
                           "ATTRIBUTE \"rng_seed\"", "H5T_STD_U64LE", "H5T_STD_U8LE", "H5T_IEEE_F32LE"})
    EXPECT_NE(out.find(part), std::string::npos) << "missing " << part << " in:\n" << out;
  // Per dataset: 1.10's h5dump has no name for IEEE half, it prints the type's layout.
  const std::string param = run_command("h5dump -H -d /parameters/model.decoder.layers.0.fc1.weight " + path("h.h5"));
  EXPECT_NE(param.find("DATATYPE  16-bit little-endian floating-point 16-bit precision"), std::string::npos) << param;
  const std::string mask = run_command("h5dump -H -d /masks/model.decoder.layers.0.fc1.weight " + path("h.h5"));
  EXPECT_NE(mask.find("DATATYPE  H5T_STD_U8LE"), std::string::npos) << mask;
  const std::string moment = run_command("h5dump -H -d /optimizer/v/model.decoder.layers.0.fc1.bias " + path("h.h5"));
  EXPECT_NE(moment.find("DATATYPE  H5T_IEEE_F32LE"), std::string::npos) << moment;
}

TEST_F(CheckpointTest, H5pyReadsFloat16) {
  if (run_command("python3 -c 'import h5py' && echo ok").find("ok") == std::string::npos)
    GTEST_SKIP() << "python3 with h5py not available";
  save_checkpoint(path("h.h5"), make_checkpoint(5), {.fp16_parameters = true, .gzip_level = 4});
  const std::string out = run_command(
      "python3 -c \"import h5py,sys; f=h5py.File(sys.argv[1],'r'); "
      "d=lambda s: s.decode() if isinstance(s, bytes) else s; "
      "print(f['parameters/model.decoder.layers.0.fc1.bias'].dtype, "
      "f['masks/model.decoder.layers.0.fc1.weight'].dtype, "
      "f['optimizer/m/model.decoder.layers.0.fc1.bias'].dtype, d(f.attrs['stage']), f.attrs['rng_seed'], "
      "f['parameters/model.decoder.layers.0.fc1.bias'].fletcher32, list(f['parameters'].keys())[0])\" " +
      path("h.h5"));
  // Fixed-length strings read as bytes in h5py; the group lists datasets in the order they were saved.
  EXPECT_NE(out.find("float16 uint8 float32 retrain 16045690984503098046 True model.decoder.layers.0.fc1.weight"),
            std::string::npos) << out;
}

TEST_F(CheckpointTest, TruncatedFilesAlwaysFailCleanly) {
  for (bool compressed : {false, true}) {
    save_checkpoint(path("full.h5"), compressed ? make_pruned_checkpoint(6, 0.5) : make_checkpoint(6),
                    {.fp16_parameters = false, .gzip_level = 1, .compress_pruned = compressed});
    const std::string bytes = file_bytes(path("full.h5"));
    std::mt19937_64 rng(20240611 + compressed);
    std::vector<size_t> cuts = {0, 4, 100};  // inside the signature and the superblock, plus 20 random ones
    for (int i = 0; i < 20; ++i) cuts.push_back(size_t(rng() % bytes.size()));
    SCOPED_TRACE(compressed ? "compressed" : "dense");
    for (size_t cut : cuts) {
      const std::string p = path("cut.h5");
      std::ofstream(p, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(cut));
      try {
        load_checkpoint(p);
        ADD_FAILURE() << "a file cut at " << cut << " of " << bytes.size() << " bytes loaded";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("checkpoint " + p + " is truncated or corrupt ("), std::string::npos)
            << "cut at " << cut << ": " << e.what();
        EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();  // one line
      }
    }
  }
  std::ofstream(path("text.h5")) << "not an HDF5 file at all, just some text";
  expect_error([&] { load_checkpoint(path("text.h5")); }, "is truncated or corrupt (no HDF5 signature)");
}

// Metadata is checksummed (HDF5 1.10 format) and every chunk carries a Fletcher-32 checksum, so a flipped byte
// anywhere either fails to load or lands in unused space and changes nothing; it never yields different data.
TEST_F(CheckpointTest, FlippedBytesAreDetectedOrHarmless) {
  for (bool compressed : {false, true}) {
    SCOPED_TRACE(compressed ? "compressed" : "dense");
    const Checkpoint c = compressed ? make_pruned_checkpoint(18, 0.5) : make_checkpoint(18);
    save_checkpoint(path("good.h5"), c, {.fp16_parameters = false, .gzip_level = 0, .compress_pruned = compressed});
    const std::string bytes = file_bytes(path("good.h5"));
    std::mt19937_64 rng(777 + compressed);
    int detected = 0;
    for (int i = 0; i < 200; ++i) {
      std::string damaged = bytes;
      const size_t at = size_t(rng() % damaged.size());
      damaged[at] = char(damaged[at] ^ char(1 + rng() % 255));
      std::ofstream(path("bad.h5"), std::ios::binary | std::ios::trunc)
          .write(damaged.data(), std::streamsize(damaged.size()));
      try {
        expect_same(c, load_checkpoint(path("bad.h5")));
      } catch (const Error& e) {
        ++detected;
        EXPECT_NE(std::string(e.what()).find("is truncated or corrupt ("), std::string::npos)
            << "byte " << at << ": " << e.what();
      }
      if (HasFailure()) FAIL() << "flipped byte " << at << " of " << bytes.size();
    }
    EXPECT_GT(detected, 100);
  }
}

// A child process saves a 64 MB checkpoint over a good one and is SIGKILLed part-way.
TEST_F(CheckpointTest, KilledWriterLeavesPreviousCheckpointIntact) {
  const std::string p = path("ckpt.h5"), tmp = p + ".tmp";
  const Checkpoint good = make_checkpoint(7);
  save_checkpoint(p, good);
  Checkpoint big = make_checkpoint(8);
  big.parameters.emplace_back("model.decoder.big", pt::test::random_tensor({4096, 4096}, 9));  // 64 MiB
  int killed_mid_write = 0;
  // Kill after a fixed delay, or (delay < 0) this long after the .tmp appears.
  for (int delay_ms : {0, 2, 10, 40, -1, -20, -60}) {
    fs::remove(tmp);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      try {
        save_checkpoint(p, big);
      } catch (...) {
        ::_exit(2);
      }
      ::_exit(0);
    }
    if (delay_ms < 0) {
      for (int i = 0; i < 50000 && !fs::exists(tmp); ++i) std::this_thread::sleep_for(std::chrono::microseconds(100));
      delay_ms = -delay_ms - 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    const bool tmp_left = fs::exists(tmp);
    Checkpoint now = load_checkpoint(p);  // must load whatever happened
    if (tmp_left || now.parameters.size() == good.parameters.size()) {
      expect_same(good, now);
      killed_mid_write += tmp_left;
    } else {
      expect_same(big, now);  // the child finished first: the new file is complete
      save_checkpoint(p, good);
    }
  }
  RecordProperty("killed_mid_write", killed_mid_write);
  EXPECT_GE(killed_mid_write, 2) << "the writer was never caught mid-write; the test proves nothing";
  // A stale .tmp (from the last kill, or garbage) does not stop the next save.
  std::ofstream(tmp) << "garbage left by a crash";
  Checkpoint next = make_checkpoint(10);
  save_checkpoint(p, next);
  expect_same(next, load_checkpoint(p));
  EXPECT_FALSE(fs::exists(tmp));
}

TEST_F(CheckpointTest, FailedSaveOverwritesNothing) {
  const std::string p = path("ckpt.h5"), tmp = p + ".tmp";
  const Checkpoint good = make_checkpoint(11);
  save_checkpoint(p, good);
  // Bad input is refused before the disk is touched.
  Checkpoint bad = make_checkpoint(12);
  bad.masks["model.decoder.layers.0.fc1.bias"] = Tensor::zeros({32}, DType::f32);
  expect_error([&] { save_checkpoint(p, bad); }, "mask 'model.decoder.layers.0.fc1.bias' must be a u8 tensor");
  bad = make_checkpoint(12);
  bad.masks["no.such.weight"] = random_mask({3}, 1);
  expect_error([&] { save_checkpoint(p, bad); }, "mask 'no.such.weight' has no parameter of that name");
  bad = make_checkpoint(12);
  bad.optimizer->v.erase("model.decoder.layers.0.fc1.bias");
  expect_error([&] { save_checkpoint(p, bad); }, "has only one of m and v");
  bad = make_checkpoint(12);
  bad.metrics = "{not json";
  expect_error([&] { save_checkpoint(p, bad); }, "must be valid JSON");
  // The folder does not exist / the .tmp cannot be created (a folder is in the way).
  expect_error([&] { save_checkpoint(path("missing/ckpt.h5"), good); }, "H5Fcreate failed");
  fs::create_directories(tmp);
  expect_error([&] { save_checkpoint(p, make_checkpoint(13)); }, "save_checkpoint " + p);
  fs::remove(tmp);
  // The disk fills up mid-write (RLIMIT_FSIZE in a child): error, .tmp removed, a retry succeeds, and the child
  // exits normally (HDF5 1.10's teardown used to crash at exit on the file whose close had failed).
  Checkpoint large = make_checkpoint(14);  // built before fork: the child only saves
  large.parameters.emplace_back("model.decoder.large", pt::test::random_tensor({1024, 1024}, 15));  // 4 MiB
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit small{256 << 10, RLIM_INFINITY};
    ::setrlimit(RLIMIT_FSIZE, &small);
    int code = 1;
    try {
      save_checkpoint(p, large);
    } catch (const Error& e) {
      (void)!::write(fds[1], e.what(), std::strlen(e.what()));
      code = fs::exists(tmp) ? 3 : 0;
    }
    rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
    ::setrlimit(RLIMIT_FSIZE, &unlimited);
    try {
      save_checkpoint(path("retry.h5"), large);
      if (load_checkpoint(path("retry.h5")).parameters.size() != large.parameters.size()) code = 4;
    } catch (...) {
      code = 4;
    }
    std::exit(code);  // runs atexit handlers, unlike _exit
  }
  ::close(fds[1]);
  std::string message(4096, '\0');
  message.resize(size_t(std::max<ssize_t>(0, ::read(fds[0], message.data(), message.size()))));
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child crashed (signal " << WTERMSIG(status) << ")";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: the save did not fail; 3: the .tmp was left behind; 4: retry failed";
  EXPECT_NE(message.find("save_checkpoint " + p + ": "), std::string::npos) << message;
  expect_same(good, load_checkpoint(p));
  EXPECT_FALSE(fs::exists(tmp));
}

TEST_F(CheckpointTest, VersionAndAttributeErrorsAreClear) {
  const std::string p = path("c.h5");
  expect_error([&] { load_checkpoint(path("nope.h5")); }, "checkpoint " + path("nope.h5") + " does not exist");
  save_checkpoint(p, make_checkpoint(16));
  for (int64_t bad : {int64_t(0), int64_t(3)}) {
    edit_file(p, [&](hid_t f) {
      hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
      EXPECT_GE(H5Awrite(a, H5T_NATIVE_INT64, &bad), 0);
      H5Aclose(a);
    });
    expect_error([&] { load_checkpoint(p); },
                 "has format version " + std::to_string(bad) + "; this build reads versions 1 to 2 only");
  }
  save_checkpoint(p, make_checkpoint(16));
  edit_file(p, [](hid_t f) { EXPECT_GE(H5Adelete(f, "stage"), 0); });
  expect_error([&] { load_checkpoint(p); }, "missing attribute 'stage' on /");
  edit_file(p, [](hid_t f) { EXPECT_GE(H5Adelete(f, "format"), 0); });
  expect_error([&] { load_checkpoint(p); }, "is an HDF5 file but not a prune-and-tune checkpoint");
  hid_t foreign = H5Fcreate(path("foreign.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);  // oldest format
  ASSERT_GE(foreign, 0);
  H5Fclose(foreign);
  expect_error([&] { load_checkpoint(path("foreign.h5")); }, "is an HDF5 file but not a prune-and-tune checkpoint");
}

TEST_F(CheckpointTest, DatasetErrorsNameTheTensor) {
  const std::string p = path("c.h5");
  const Checkpoint c = make_checkpoint(17);
  ExpectedTensors expected;
  for (const auto& [name, t] : c.parameters) expected.emplace_back(name, t.shape());
  save_checkpoint(p, c);
  validate_checkpoint(load_checkpoint(p), expected, ExpectedTensors{{"model.decoder.layers.0.fc1.weight", {32, 16}}});
  // A dataset removed: load still works (it is self-consistent), the model comparison names it.
  unlink_in(p, "/parameters/model.decoder.embed_tokens.weight");
  expect_error([&] { validate_checkpoint(load_checkpoint(p), expected); },
               "missing parameter 'model.decoder.embed_tokens.weight' (the model expects [50, 16])");
  // Wrong shape and an unexpected tensor.
  expected = {{"model.decoder.layers.0.fc1.weight", {16, 32}}, {"model.decoder.layers.0.fc1.bias", {32}},
              {"lm_head.scale", {}}};
  expect_error([&] { validate_checkpoint(load_checkpoint(p), expected); },
               "parameter 'model.decoder.layers.0.fc1.weight' has shape [32, 16] in the checkpoint but the model "
               "expects [16, 32]");
  expect_error([&] { validate_checkpoint(load_checkpoint(p), expected); }, "unexpected parameter 'model.empty'");
  // A mask whose parameter is gone, an optimizer moment without its twin, a dataset of the wrong type.
  unlink_in(p, "/parameters/model.decoder.layers.0.fc1.weight");
  expect_error([&] { load_checkpoint(p); }, "mask 'model.decoder.layers.0.fc1.weight' has no parameter of that name");
  save_checkpoint(p, c);
  unlink_in(p, "/optimizer/v/model.decoder.layers.0.fc1.bias");
  expect_error([&] { load_checkpoint(p); },
               "optimizer state 'model.decoder.layers.0.fc1.bias' has only one of m and v");
  save_checkpoint(p, c);
  edit_file(p, [](hid_t f) {
    hsize_t dims[1] = {3};
    hid_t s = H5Screate_simple(1, dims, nullptr);
    hid_t d = H5Dcreate2(f, "/parameters/ints", H5T_STD_I32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    EXPECT_GE(d, 0);
    H5Dclose(d), H5Sclose(s);
  });
  expect_error([&] { load_checkpoint(p); }, "/parameters/ints has an unsupported element type (32-bit integer)");
}

// ---- compressed pruned parameters ------------------------------------------------------------------------

// Every sparsity from nothing pruned to everything pruned, f32 and fp16 storage, gzip on and off: a compressed
// file loads to exactly what the dense file loads to (parameters, masks, optimizer state, attributes).
TEST_F(CheckpointTest, CompressedRoundTripIsBitExact) {
  uint64_t seed = 30;
  for (double sparsity : {0.0, 0.5, 0.9, 1.0})
    for (bool fp16 : {false, true})
      for (int gzip : {0, 5}) {
        SCOPED_TRACE(testing::Message() << "sparsity " << sparsity << ", fp16 " << fp16 << ", gzip " << gzip);
        const Checkpoint c = make_pruned_checkpoint(seed++, sparsity);
        const std::string dense = path("dense.h5"), packed = path("packed.h5");
        const SaveReport dense_report =
            save_checkpoint(dense, c, {.fp16_parameters = fp16, .gzip_level = gzip, .compress_pruned = false});
        const SaveReport packed_report =
            save_checkpoint(packed, c, {.fp16_parameters = fp16, .gzip_level = gzip, .compress_pruned = true});
        expect_report(dense_report, expected_report(c, fp16, false), dense);
        expect_report(packed_report, expected_report(c, fp16, true), packed);
        EXPECT_EQ(packed_report.compressed_parameters, 5);
        EXPECT_EQ(format_version_of(dense), 1);  // older builds still read uncompressed files
        EXPECT_EQ(format_version_of(packed), 2);
        EXPECT_FALSE(fs::exists(packed + ".tmp"));
        for (bool keep_fp16 : {false, true}) {
          const Checkpoint from_packed = load_checkpoint(packed, {.keep_fp16 = keep_fp16, .load_optimizer = true});
          expect_same(load_checkpoint(dense, {.keep_fp16 = keep_fp16, .load_optimizer = true}), from_packed);
          for (const auto& [name, m] : from_packed.masks) {  // dense u8 0/1 in the parameter's shape
            EXPECT_EQ(m.dtype(), DType::u8) << name;
            EXPECT_EQ(m.shape(), c.find_parameter(name)->shape()) << name;
          }
        }
        if (!fp16) expect_same(c, load_checkpoint(packed));  // f32: exactly what was saved, special values too
        // The stored form: 7 x 13 = 91 elements -> kept values and ceil(91 / 8) = 12 bytes.
        const int64_t kept = 91 - std::llround(sparsity * 91);
        edit_file(packed, [&](hid_t f) {
          for (const auto& [group, length] : {std::pair{"/parameters/", kept}, {"/masks/", int64_t(12)}}) {
            hid_t d = H5Dopen2(f, (group + std::string(kQ)).c_str(), H5P_DEFAULT);
            hid_t space = H5Dget_space(d);
            EXPECT_EQ(H5Sget_simple_extent_ndims(space), 1) << group;
            EXPECT_EQ(H5Sget_simple_extent_npoints(space), length) << group;
            H5Sclose(space), H5Dclose(d);
          }
        });
      }
}

// The scattered kept values are the only values stored: at 50 % sparsity the file is well under two thirds of the
// dense one, and the report's numbers are exact.
TEST_F(CheckpointTest, CompressedFileIsSmallerAndReportIsExact) {
  Checkpoint c;
  Tensor w = pt::test::random_tensor({256, 256}, 41, -1.0, 1.0);
  prune_exactly(w, c.masks[kQ], 0.5, 42);
  c.parameters.emplace_back(kQ, w);
  c.parameters.emplace_back("model.decoder.layers.0.self_attn.q_proj.bias", pt::test::random_tensor({256}, 43));
  const int64_t n = 256 * 256, kept = n / 2;
  const SaveReport dense = save_checkpoint(path("dense.h5"), c);
  const SaveReport packed = save_checkpoint(path("packed.h5"), c, {.compress_pruned = true});
  EXPECT_EQ(dense.parameter_bytes_dense, n * 4);
  EXPECT_EQ(dense.parameter_bytes_stored, n * 4 + n);
  EXPECT_EQ(dense.compressed_parameters, 0);
  EXPECT_EQ(packed.parameter_bytes_dense, n * 4);
  EXPECT_EQ(packed.parameter_bytes_stored, kept * 4 + n / 8);
  EXPECT_EQ(packed.compressed_parameters, 1);
  EXPECT_EQ(dense.file_bytes, int64_t(fs::file_size(path("dense.h5"))));
  EXPECT_EQ(packed.file_bytes, int64_t(fs::file_size(path("packed.h5"))));
  const double ratio = double(packed.file_bytes) / double(dense.file_bytes);
  RecordProperty("size_ratio_f32", std::to_string(ratio));
  std::printf("compressed / dense file size at 50%% sparsity, 256x256 f32: %lld / %lld = %.3f\n",
              (long long)packed.file_bytes, (long long)dense.file_bytes, ratio);
  EXPECT_LT(ratio, 0.65);
  expect_same(c, load_checkpoint(path("packed.h5")));
  // fp16: 2 bytes a value.
  const SaveReport half = save_checkpoint(path("half.h5"), c, {.fp16_parameters = true, .compress_pruned = true});
  EXPECT_EQ(half.parameter_bytes_dense, n * 2);
  EXPECT_EQ(half.parameter_bytes_stored, kept * 2 + n / 8);
  // A save without masks reports no masked parameters.
  c.masks.clear();
  const SaveReport none = save_checkpoint(path("none.h5"), c, {.compress_pruned = true});
  EXPECT_EQ(none.parameter_bytes_dense + none.parameter_bytes_stored + none.compressed_parameters, 0);
  EXPECT_EQ(format_version_of(path("none.h5")), 1);
}

// Compression drops the values where the mask is 0; a weight that is not zero there is refused before the disk is
// touched, so the previous checkpoint stays byte for byte. -0.0 counts as zero (it loads as +0.0).
TEST_F(CheckpointTest, CompressingNonzeroPrunedWeightIsRefused) {
  const std::string p = path("ckpt.h5");
  save_checkpoint(p, make_checkpoint(50));
  const std::string before = file_bytes(p);
  const Checkpoint good = make_pruned_checkpoint(51, 0.5);
  const uint8_t* mask = good.masks.at(kQ).data<uint8_t>();
  const int64_t pruned_at = std::find(mask, mask + 91, uint8_t(0)) - mask;
  ASSERT_LT(pruned_at, 91);
  for (float bad : {1e-30f, -3.0f, std::nanf(""), std::numeric_limits<float>::infinity()}) {
    for (bool fp16 : {false, true}) {  // 1e-30 is 0 in fp16, but the weight itself is not pruned: refused too
      Checkpoint c = make_pruned_checkpoint(51, 0.5);
      param_of(c, kQ).data<float>()[pruned_at] = bad;
      expect_error([&] { save_checkpoint(p, c, {.fp16_parameters = fp16, .compress_pruned = true}); },
                   std::string("save_checkpoint ") + p + ": parameter '" + kQ +
                       "' has nonzero values where its mask is 0; compressing would lose them (1 such value, the "
                       "first at flat index " + std::to_string(pruned_at));
      EXPECT_EQ(file_bytes(p), before);
      EXPECT_FALSE(fs::exists(p + ".tmp"));
      save_checkpoint(path("uncompressed.h5"), c, {.fp16_parameters = fp16});  // dense: saved as it is
    }
  }
  Checkpoint c = make_pruned_checkpoint(51, 0.5);
  param_of(c, kQ).data<float>()[pruned_at] = -0.0f;
  save_checkpoint(p, c, {.compress_pruned = true});
  const Checkpoint loaded = load_checkpoint(p);
  uint32_t bits = 1;
  std::memcpy(&bits, &loaded.find_parameter(kQ)->data<float>()[pruned_at], 4);
  EXPECT_EQ(bits, 0u);
  expect_same(good, loaded);
}

// Pieces that disagree (values against set bits, packed length against packed_bits, dense_shape against the mask,
// stray bits, a missing or unpacked mask) fail to load with a message that names the tensor.
TEST_F(CheckpointTest, CompressedInconsistenciesNameTheTensor) {
  const std::string p = path("c.h5"), P = std::string("/parameters/") + kQ, M = std::string("/masks/") + kQ;
  const Checkpoint c = make_pruned_checkpoint(60, 0.5);
  const int64_t kept = 45;  // 91 - round(0.5 * 91)
  ASSERT_EQ(std::count(c.masks.at(kQ).data<uint8_t>(), c.masks.at(kQ).data<uint8_t>() + 91, uint8_t(1)), kept);
  const std::string corrupt = "checkpoint " + p + " is truncated or corrupt (";
  auto fresh = [&] { save_checkpoint(p, c, {.fp16_parameters = false, .gzip_level = 1, .compress_pruned = true}); };
  fresh();
  expect_same(c, load_checkpoint(p));

  // One value too many (the dataset rewritten, attributes and all).
  edit_file(p, [&](hid_t f) {
    std::vector<float> values(size_t(kept + 1), 0.5f);
    put_dataset(f, P, H5T_NATIVE_FLOAT, values.data(), values.size());
    put_string_attr(f, P, "sparse_format", "bitmask");
    const int64_t shape[2] = {7, 13};
    put_attr(f, P, "dense_shape", H5T_NATIVE_INT64, shape, 2);
  });
  expect_error([&] { load_checkpoint(p); },
               corrupt + P + " holds 46 values but its mask " + M + " has 45 bits set)");
  // One more bit set in the mask than there are values.
  fresh();
  edit_file(p, [&](hid_t f) {
    std::vector<uint8_t> bytes = read_bytes(f, M);
    const int64_t zero = std::find(c.masks.at(kQ).data<uint8_t>(), c.masks.at(kQ).data<uint8_t>() + 91, uint8_t(0)) -
                         c.masks.at(kQ).data<uint8_t>();
    bytes[size_t(zero / 8)] = uint8_t(bytes[size_t(zero / 8)] | (1 << (zero % 8)));
    write_bytes(f, M, bytes);
  });
  expect_error([&] { load_checkpoint(p); }, corrupt + P + " holds 45 values but its mask " + M + " has 46 bits set)");
  // A stray bit past the 91st (the last byte holds 3 used bits).
  fresh();
  edit_file(p, [&](hid_t f) {
    std::vector<uint8_t> bytes = read_bytes(f, M);
    ASSERT_EQ(bytes.size(), 12u);
    bytes[11] = uint8_t(bytes[11] | 0x80);
    write_bytes(f, M, bytes);
  });
  expect_error([&] { load_checkpoint(p); }, corrupt + M + " has bits set past packed_bits = 91)");
  // The packed mask one byte too long.
  fresh();
  edit_file(p, [&](hid_t f) {
    std::vector<uint8_t> bytes = read_bytes(f, M);
    bytes.push_back(0);
    put_dataset(f, M, H5T_NATIVE_UINT8, bytes.data(), bytes.size());
    const int64_t bits = 91;
    put_attr(f, M, "packed_bits", H5T_NATIVE_INT64, &bits);
  });
  expect_error([&] { load_checkpoint(p); },
               corrupt + M + " holds 13 bytes but its packed_bits = 91 needs ceil(91 / 8) = 12)");
  // packed_bits disagreeing with the bytes, and dense_shape disagreeing with packed_bits.
  fresh();
  edit_file(p, [&](hid_t f) {
    const int64_t bits = 100;
    put_attr(f, M, "packed_bits", H5T_NATIVE_INT64, &bits);
  });
  expect_error([&] { load_checkpoint(p); }, corrupt + M + " holds 12 bytes but its packed_bits = 100");
  fresh();
  edit_file(p, [&](hid_t f) {
    const int64_t shape[2] = {7, 14};
    put_attr(f, P, "dense_shape", H5T_NATIVE_INT64, shape, 2);
  });
  expect_error([&] { load_checkpoint(p); }, corrupt + P + " has dense_shape [7, 14] but its mask " + M + " packs 91");
  fresh();
  edit_file(p, [&](hid_t f) {
    const int64_t shape[2] = {-7, -13};
    put_attr(f, P, "dense_shape", H5T_NATIVE_INT64, shape, 2);
  });
  expect_error([&] { load_checkpoint(p); }, corrupt + P + " has dense_shape [-7, -13]");
  // No mask at all; a mask stored dense; a packed mask next to a dense parameter; an unknown format.
  fresh();
  unlink_in(p, M.c_str());
  expect_error([&] { load_checkpoint(p); },
               std::string("parameter '") + kQ + "' is stored compressed (sparse_format 'bitmask') but its mask " + M +
                   " is missing");
  fresh();
  edit_file(p, [&](hid_t f) {
    hid_t d = H5Dopen2(f, M.c_str(), H5P_DEFAULT);
    EXPECT_GE(H5Adelete(d, "packed_bits"), 0);
    H5Dclose(d);
  });
  expect_error([&] { load_checkpoint(p); }, corrupt + P + " is compressed but its mask " + M + " is not bit-packed)");
  fresh();
  edit_file(p, [&](hid_t f) {
    hid_t d = H5Dopen2(f, P.c_str(), H5P_DEFAULT);
    EXPECT_GE(H5Adelete(d, "sparse_format"), 0);
    H5Dclose(d);
  });
  expect_error([&] { load_checkpoint(p); },
               corrupt + M + " is bit-packed but its parameter " + P + " is not compressed)");
  fresh();
  edit_file(p, [&](hid_t f) { put_string_attr(f, P, "sparse_format", "csr"); });
  expect_error([&] { load_checkpoint(p); }, P + " has sparse_format 'csr'; this build reads 'bitmask' only");
  fresh();
  expect_same(c, load_checkpoint(p));
}

// The layout documented in checkpoint.h is enough to decode a compressed weight with numpy.
TEST_F(CheckpointTest, H5pyDecodesCompressedWeights) {
  if (run_command("python3 -c 'import h5py, numpy' && echo ok").find("ok") == std::string::npos)
    GTEST_SKIP() << "python3 with h5py and numpy not available";
  const std::string script = path("decode.py");
  std::ofstream(script) << R"PY(import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
decoded = 0
for k in f["masks"]:
    p = f["parameters/" + k]
    assert p.attrs["sparse_format"] == b"bitmask", p.attrs["sparse_format"]
    shape = tuple(int(d) for d in p.attrs["dense_shape"]); n = int(np.prod(shape))
    assert int(f["masks/" + k].attrs["packed_bits"]) == n
    keep = np.unpackbits(f["masks/" + k][:], bitorder="little")[:n].astype(bool)
    w = np.zeros(n, p.dtype); w[keep] = p[:]; w = w.reshape(shape)
    mask = keep.astype(np.uint8).reshape(shape)
    want_w = np.fromfile(sys.argv[2] + "/" + k + ".param", dtype=p.dtype).reshape(shape)
    want_m = np.fromfile(sys.argv[2] + "/" + k + ".mask", dtype=np.uint8).reshape(shape)
    assert w.tobytes() == want_w.tobytes(), k
    assert mask.tobytes() == want_m.tobytes(), k
    decoded += 1
print("decoded", decoded, f["parameters/" + k].dtype)
)PY";
  for (bool fp16 : {false, true}) {
    const Checkpoint c = make_pruned_checkpoint(70, 0.7);
    save_checkpoint(path("dense.h5"), c, {.fp16_parameters = fp16, .gzip_level = 0});
    save_checkpoint(path("packed.h5"), c, {.fp16_parameters = fp16, .gzip_level = 3, .compress_pruned = true});
    // What numpy must get: the dense file's tensors, as stored.
    const Checkpoint want = load_checkpoint(path("dense.h5"), {.keep_fp16 = true, .load_optimizer = false});
    fs::create_directories(path("want"));
    for (const auto& [name, m] : want.masks) {
      const Tensor& t = *want.find_parameter(name);
      std::ofstream(path("want/" + name + ".param"), std::ios::binary)
          .write(static_cast<const char*>(t.data_ptr()), std::streamsize(t.nbytes()));
      std::ofstream(path("want/" + name + ".mask"), std::ios::binary)
          .write(static_cast<const char*>(m.data_ptr()), std::streamsize(m.nbytes()));
    }
    const std::string out = run_command("python3 " + script + " " + path("packed.h5") + " " + path("want"));
    EXPECT_NE(out.find(std::string("decoded 5 ") + (fp16 ? "float16" : "float32")), std::string::npos) << out;
  }
}

}  // namespace
