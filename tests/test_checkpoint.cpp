// HDF5 checkpoints: bit-exact round trips (f32, fp16 storage, gzip, pruned weights compressed as kept values +
// packed mask bits), the on-disk layout as other tools see it (h5dump, h5py), truncated files failing cleanly, a
// writer killed mid-save leaving the previous checkpoint intact, failed saves overwriting nothing, and clear errors
// for foreign, mismatched or inconsistent files.
#include "tests/checkpoint_fixtures.h"

namespace {

using namespace pt::test::checkpoint_fixtures;

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

}  // namespace
