// HDF5 checkpoints with pruned weights compressed as kept values + packed mask bits: bit-exact round trips at
// every sparsity, smaller files with exact reports, refusal of nonzero pruned weights, inconsistent pieces naming
// the tensor, and the layout decodable with numpy.
#include "tests/checkpoint_fixtures.h"

namespace {

using namespace pt::test::checkpoint_fixtures;

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
