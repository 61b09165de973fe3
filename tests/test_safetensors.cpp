// Safetensors reader/writer: exact round trips, a hand-built file decoded independently of the writer,
// and every structural defect (truncation at any byte, bad offsets, bad dtypes, bad JSON) failing with a
// one-line message that names the file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "nn/safetensors.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using pt::Device;
using pt::DType;
using pt::Tensor;
using pt::nn::SafetensorsFile;
using pt::nn::write_safetensors;

namespace {

using pt::test::same_bytes;

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "message: " << (text) << "\nmissing: " << (part)

using SafetensorsTest = pt::test::TempDirTest;

// Writes [8-byte little-endian length][header][data] by hand, independently of write_safetensors.
void write_raw(const std::string& path, const std::string& header, const std::string& data,
               uint64_t length_field = UINT64_MAX) {
  uint64_t n = length_field == UINT64_MAX ? header.size() : length_field;
  std::ofstream out(path, std::ios::binary);
  for (int i = 0; i < 8; ++i) out.put(char((n >> (8 * i)) & 0xff));
  out << header << data;
}

std::string open_error(const std::string& path) {
  try {
    SafetensorsFile f(path);
  } catch (const pt::Error& e) {
    return e.what();
  }
  return "";
}

std::vector<std::pair<std::string, Tensor>> sample_tensors() {
  using pt::test::random_tensor;
  return {
      {"w.f32", random_tensor({3, 5}, 11)},
      {"w.f16", random_tensor({7}, 12, -4, 4, DType::f16)},  // Tensor::to(f16) inside
      {"w.bf16", random_tensor({2, 3, 4}, 13, -4, 4, DType::bf16)},
      {"w.f64", random_tensor({4}, 14, -1, 1, DType::f64)},
      {"ids", Tensor::from_vector<int64_t>({5, -3, 1LL << 40}, {3})},
      {"ids32", Tensor::from_vector<int32_t>({-7, 9}, {2})},
      {"mask", Tensor::from_vector<uint8_t>({1, 0, 1, 1}, {2, 2})},
      {"empty", Tensor::empty({0, 3})},
      {"scalar", Tensor::full({}, 2.5)},
  };
}

TEST_F(SafetensorsTest, RoundTripIsBitwiseForEveryStoredDtype) {
  const auto tensors = sample_tensors();
  write_safetensors(path("a.safetensors"), tensors, {{"format", "pt"}, {"note", "ünïcode"}});
  SafetensorsFile f(path("a.safetensors"));
  EXPECT_EQ(f.names(),
            (std::vector<std::string>{"empty", "ids", "ids32", "mask", "scalar", "w.bf16", "w.f16", "w.f32", "w.f64"}));
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "ünïcode");
  for (auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(f.has(name));
    EXPECT_EQ(f.info(name).dtype, t.dtype());
    EXPECT_EQ(f.info(name).shape, t.shape());
    EXPECT_TRUE(same_bytes(f.read(name, t.dtype()), t));
    Tensor dst = Tensor::full(t.shape(), 9.0, t.dtype());
    f.read_into(name, dst);
    EXPECT_TRUE(same_bytes(dst, t));
  }
  EXPECT_EQ(f.info("w.f16").stored_dtype, "F16");
  EXPECT_FALSE(f.has("nope"));
  EXPECT_THROW(f.info("nope"), pt::Error);

  // The header is space-padded to a multiple of 8 and the data section holds exactly the tensors.
  std::ifstream in(path("a.safetensors"), std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ(n % 8, 0u);
  size_t data = 0;
  for (auto& kv : tensors) data += kv.second.nbytes();
  EXPECT_EQ(fs::file_size(path("a.safetensors")), 8 + n + data);
}

TEST_F(SafetensorsTest, FloatConversionsMatchPtOwnHalfRoutines) {
  Tensor h = pt::test::random_tensor({64}, 21, -100, 100, DType::f16);
  Tensor b = pt::test::random_tensor({64}, 22, -100, 100, DType::bf16);
  Tensor s = pt::test::random_tensor({64}, 23, -100, 100, DType::f32);
  write_safetensors(path("c.safetensors"), {{"h", h}, {"b", b}, {"s", s}});
  SafetensorsFile f(path("c.safetensors"));
  const Tensor h32 = f.read("h", DType::f32), b32 = f.read("b", DType::f32), s16 = f.read("s", DType::f16);
  const Tensor s64 = f.read("s", DType::f64), sbf = f.read("s", DType::bf16);
  for (int64_t i = 0; i < 64; ++i) {
    EXPECT_EQ(pt::float_to_bits(h32.data<float>()[i]),
              pt::float_to_bits(pt::f16_to_float(h.data<pt::half_t>()[i].bits)));
    EXPECT_EQ(b32.data<float>()[i], pt::bf16_to_float(b.data<pt::bfloat16_t>()[i].bits));
    EXPECT_EQ(s16.data<pt::half_t>()[i].bits, pt::float_to_f16(s.data<float>()[i]));
    EXPECT_EQ(sbf.data<pt::bfloat16_t>()[i].bits, pt::float_to_bf16(s.data<float>()[i]));
    EXPECT_EQ(s64.data<double>()[i], double(s.data<float>()[i]));
  }
  // Integer data reads only as its own dtype.
  write_safetensors(path("i.safetensors"), {{"ids", Tensor::from_vector<int64_t>({1, 2}, {2})}});
  try {
    SafetensorsFile(path("i.safetensors")).read("ids", DType::f32);
    ADD_FAILURE() << "I64 read as f32 should fail";
  } catch (const pt::Error& e) {
    EXPECT_CONTAINS(e.what(), "tensor ids is stored as I64 and cannot be read as f32");
  }
}

TEST_F(SafetensorsTest, HandBuiltFileDecodesToKnownValues) {
  // Unpadded header, so the data starts at an odd offset: the reader must not assume alignment.
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"F16","shape":[1,2],"data_offsets":[8,12]},)"
      R"("c":{"dtype":"BF16","shape":[],"data_offsets":[12,14]},)"
      R"("d":{"dtype":"I64","shape":[1],"data_offsets":[14,22]},)"
      R"("e":{"dtype":"BOOL","shape":[3],"data_offsets":[22,25]}})";
  // clang-format off
  const std::string data("\x00\x00\xc0\x3f" "\x00\x00\x00\xc0"  // f32 1.5, -2.0
                         "\x00\x3c" "\x00\xb8"                  // f16 1.0, -0.5
                         "\x40\x40"                             // bf16 3.0
                         "\x07\x01\x00\x00\x00\x00\x00\x80"     // i64 0x8000000000000107
                         "\x01\x00\x01",                        // bool 1, 0, 1
                         25);
  // clang-format on
  ASSERT_NE((8 + header.size()) % 4, 0u);
  write_raw(path("h.safetensors"), header, data);
  SafetensorsFile f(path("h.safetensors"));
  EXPECT_EQ(f.read("a", DType::f32).to_vector<float>(), (std::vector<float>{1.5f, -2.0f}));
  EXPECT_EQ(f.read("b", DType::f32).to_vector<float>(), (std::vector<float>{1.0f, -0.5f}));
  EXPECT_EQ(f.read("b", DType::f32).shape(), (pt::Shape{1, 2}));
  EXPECT_EQ(f.read("c", DType::f64).to_vector<double>(), (std::vector<double>{3.0}));
  EXPECT_EQ(f.read("c", DType::f64).dim(), 0);
  EXPECT_EQ(f.read("d", DType::i64).to_vector<int64_t>(), (std::vector<int64_t>{int64_t(0x8000000000000107ULL)}));
  EXPECT_EQ(f.info("e").dtype, DType::u8);
  EXPECT_EQ(f.info("e").stored_dtype, "BOOL");
  EXPECT_EQ(f.read("e", DType::u8).to_vector<uint8_t>(), (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(f.metadata().at("format"), "pt");
}

TEST_F(SafetensorsTest, EveryTruncationFailsToOpenWithAClearMessage) {
  const std::string good = path("good.safetensors"), cut = path("cut.safetensors");
  write_safetensors(
      good, {{"x", pt::test::random_tensor({3, 4}, 31)}, {"y", pt::test::random_tensor({5}, 32, -1, 1, DType::f16)}},
      {{"format", "pt"}});
  const uint64_t size = fs::file_size(good);
  ASSERT_LT(size, 2000u);  // small enough to try every cut
  for (uint64_t keep = 0; keep < size; ++keep) {
    fs::copy_file(good, cut, fs::copy_options::overwrite_existing);
    fs::resize_file(cut, keep);
    const std::string msg = open_error(cut);
    ASSERT_FALSE(msg.empty()) << "a file cut to " << keep << " of " << size << " bytes opened";
    EXPECT_CONTAINS(msg, cut);
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    if (keep < 8) {
      EXPECT_CONTAINS(msg, "shorter than the 8-byte header length");
    }
  }
  fs::copy_file(good, cut, fs::copy_options::overwrite_existing);
  fs::resize_file(cut, size - 3);
  EXPECT_CONTAINS(open_error(cut), "truncated or padded");
  fs::resize_file(cut, 20);
  EXPECT_CONTAINS(open_error(cut), "truncated: header says");
  EXPECT_NO_THROW(SafetensorsFile f(good));
}

TEST_F(SafetensorsTest, HeaderLengthBeyondTheFileOrTheLimit) {
  const std::string h = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  write_raw(path("big.safetensors"), h, "abcd", 200'000'000);
  EXPECT_CONTAINS(open_error(path("big.safetensors")), "header length 200000000 is over the limit");
  write_raw(path("long.safetensors"), h, "abcd", 1000);
  const std::string msg = open_error(path("long.safetensors"));
  EXPECT_CONTAINS(msg, "truncated: header says 1000 bytes but the file has");
  EXPECT_CONTAINS(msg, path("long.safetensors"));
  EXPECT_CONTAINS(open_error(path("missing.safetensors")), "cannot open");
}

TEST_F(SafetensorsTest, OffsetsMustTileTheDataExactly) {
  auto entry = [](const char* name, int b, int e) {
    return "\"" + std::string(name) + "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[" + std::to_string(b) +
           "," + std::to_string(e) + "]}";
  };
  const std::string p = path("o.safetensors");
  write_raw(p, "{" + entry("a", 0, 8) + "," + entry("b", 4, 12) + "}", std::string(12, 'x'));
  EXPECT_CONTAINS(open_error(p), "tensor b: data_offsets [4, 12] overlap tensor a");
  write_raw(p, "{" + entry("a", 0, 8) + "," + entry("b", 12, 20) + "}", std::string(20, 'x'));
  EXPECT_CONTAINS(open_error(p), "tensor b: data_offsets [12, 20] leave a gap after tensor a");
  write_raw(p, "{" + entry("a", 4, 12) + "}", std::string(12, 'x'));
  EXPECT_CONTAINS(open_error(p), "leave a gap after the start of the data");
  write_raw(p, "{" + entry("a", 0, 8) + "}", std::string(12, 'x'));
  EXPECT_CONTAINS(open_error(p),
                  "truncated or padded: the header describes 8 bytes of tensor data but the file has 12");
  write_raw(p, R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, 'x'));
  EXPECT_CONTAINS(open_error(p), "tensor a: data_offsets [0, 8] hold 8 bytes but F32 [3] needs 12");
  write_raw(p, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", std::string(8, 'x'));
  EXPECT_CONTAINS(open_error(p), "end before they begin");
  write_raw(p, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", std::string(8, 'x'));
  EXPECT_CONTAINS(open_error(p), "\"data_offsets\" must be [begin, end]");
  write_raw(p, R"({"a":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,8]}})", std::string(8, 'x'));
  EXPECT_CONTAINS(open_error(p), "is too large");
}

TEST_F(SafetensorsTest, BadDtypeShapeAndJsonAreNamed) {
  const std::string p = path("j.safetensors");
  write_raw(p, R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", "xy");
  std::string msg = open_error(p);
  EXPECT_CONTAINS(msg, "tensor w: unsupported dtype F8_E4M3 (supported: F16, BF16, F32, F64, I32, I64, U8, BOOL)");
  EXPECT_CONTAINS(msg, p);
  write_raw(p, R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", "");
  EXPECT_CONTAINS(open_error(p), "tensor w: shape must hold non-negative integers, found [-1]");
  write_raw(p, R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,0]}})", "");
  EXPECT_CONTAINS(open_error(p), "shape must hold non-negative integers");
  write_raw(p, R"({"w":{"shape":[1],"data_offsets":[0,4]}})", "abcd");
  EXPECT_CONTAINS(open_error(p), "tensor w: missing or non-string \"dtype\"");
  write_raw(p, R"({"w": )", "");
  EXPECT_CONTAINS(open_error(p), "header: not valid JSON");
  write_raw(p, "{\"\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", "");
  EXPECT_CONTAINS(open_error(p), "header: not valid JSON");
  write_raw(p, "[1, 2]", "");
  EXPECT_CONTAINS(open_error(p), "header must be a JSON object, found array");
  write_raw(
      p,
      R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
      "abcdefgh");
  EXPECT_CONTAINS(open_error(p), "tensor w appears twice in the header");
  write_raw(p, R"({"__metadata__":{"format":1}})", "");
  EXPECT_CONTAINS(open_error(p), "__metadata__ key format must be a string");
  write_raw(p, R"({"w":[1,2]})", "");
  EXPECT_CONTAINS(open_error(p), "tensor w: header entry must be an object");
  // An empty (but valid) file: no tensors.
  write_raw(p, "{}      ", "");
  SafetensorsFile f(p);
  EXPECT_TRUE(f.names().empty());
}

// Hostile headers. Nesting is bounded before anything recurses (a shape list nested 100,000 deep crashed the
// process inside its own error message), a zero extent cannot hide overflowing ones, and what a message quotes
// from the file is printable: invalid UTF-8 and control bytes as \xNN, on one line.
TEST_F(SafetensorsTest, HostileHeadersFailWithOnePrintableLine) {
  const std::string p = path("h.safetensors");
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  write_raw(p, R"({"w":{"dtype":"F32","shape":)" + deep + R"(,"data_offsets":[0,0]}})", "");
  EXPECT_CONTAINS(open_error(p), p + ": header: JSON nests deeper than 32 levels");
  write_raw(p, std::string(100000, '{'), "");
  EXPECT_CONTAINS(open_error(p), "header: JSON nests deeper than 32 levels");

  write_raw(p, R"({"w":{"dtype":"F32","shape":[0,4611686018427387904,4611686018427387904],"data_offsets":[0,0]}})", "");
  EXPECT_CONTAINS(open_error(p), "tensor w: shape [0,4611686018427387904,4611686018427387904] is too large");
  write_raw(p, R"({"w":{"dtype":"F32","shape":[0,3037000500,3037000500],"data_offsets":[0,0]}})", "");
  EXPECT_CONTAINS(open_error(p), "is too large");

  write_raw(p, "{\"\xff\xfe\":{}}", "");
  std::string msg = open_error(p);
  EXPECT_CONTAINS(msg, "header: not valid JSON");
  EXPECT_CONTAINS(msg, "\\xff");
  EXPECT_EQ(msg.find_first_of("\xff\xfe"), std::string::npos) << "raw bytes echoed";
  write_raw(p, R"({"a\nb":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})", std::string(8, 'x'));
  msg = open_error(p);
  EXPECT_CONTAINS(msg, "tensor a\\x0ab: data_offsets [0, 8] hold 8 bytes");
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "a name with a newline split the message";
}

TEST_F(SafetensorsTest, ReadIntoChecksShapeAndFillsStridedTargets) {
  const Tensor w = pt::test::random_tensor({3, 4}, 41);
  write_safetensors(path("r.safetensors"), {{"w", w}});
  SafetensorsFile f(path("r.safetensors"));
  try {
    f.read_into("w", Tensor::zeros({4, 3}));
    ADD_FAILURE() << "shape mismatch accepted";
  } catch (const pt::Error& e) {
    EXPECT_CONTAINS(e.what(), "tensor w: expected shape [4, 3] but the file has [3, 4]");
    EXPECT_CONTAINS(e.what(), path("r.safetensors"));
  }
  // A transposed view is not contiguous: the reader goes through a temporary and copy_.
  Tensor base = Tensor::zeros({4, 3});
  f.read_into("w", base.t());
  EXPECT_TRUE(pt::test::tensors_equal(base.t(), w));
  Tensor half = Tensor::zeros({3, 4}, DType::bf16);
  f.read_into("w", half);
  EXPECT_TRUE(same_bytes(half, w.to(DType::bf16)));
}

TEST_F(SafetensorsTest, ReadIntoCudaTensor) {
  PT_SKIP_IF_NO_CUDA();
  const Tensor w = pt::test::random_tensor({5, 6}, 51, -1, 1, DType::f16);
  write_safetensors(path("g.safetensors"), {{"w", w}});
  SafetensorsFile f(path("g.safetensors"));
  Tensor dst = Tensor::zeros({5, 6}, DType::f32, Device::cuda);
  f.read_into("w", dst);
  EXPECT_TRUE(pt::test::tensors_equal(dst.to(Device::cpu), w.to(DType::f32)));
  EXPECT_TRUE(same_bytes(f.read("w", DType::f16, Device::cuda).to(Device::cpu), w));
}

TEST_F(SafetensorsTest, AtomicWriteLeavesNoTemporaryBehind) {
  const std::string p = path("m.safetensors");
  write_safetensors(p, {{"a", pt::test::random_tensor({2}, 61)}});
  write_safetensors(p, {{"b", pt::test::random_tensor({3}, 62)}});  // replaces the old file whole
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
  EXPECT_EQ(SafetensorsFile(p).names(), std::vector<std::string>{"b"});
  // Failures leave nothing behind either.
  const Tensor t = pt::test::random_tensor({2}, 63);
  EXPECT_THROW(write_safetensors(p, {{"a", t}, {"a", t}}), pt::Error);
  EXPECT_THROW(write_safetensors(path("no/such/folder/x.safetensors"), {{"a", t}}), pt::Error);
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  EXPECT_EQ(SafetensorsFile(p).names(), std::vector<std::string>{"b"});
}

}  // namespace
