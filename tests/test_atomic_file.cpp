// base/atomic_file.h: the one atomic-write recipe. A target is replaced only by a complete file; a writer that
// fails or is abandoned leaves the target as it was and no temporary behind; parallel writers of one target
// (Writers::many) never share a temporary, and the temporaries of writers that died are cleaned up.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/atomic_file.h"
#include "test_util.h"

namespace pt::test {
namespace {

namespace fs = std::filesystem;

class AtomicFileTest : public TempDirTest {
 protected:
  size_t files_in_dir() const { return size_t(std::distance(fs::directory_iterator(dir_), fs::directory_iterator())); }
};

TEST_F(AtomicFileTest, ReplacesTheTargetWithTheWholeNewFile) {
  const std::string p = path("a.txt");
  write_file_atomic(p, "old contents\n");
  EXPECT_EQ(read_text_file(p), "old contents\n");
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = char(i * 2654435761u >> 24);
  write_file_atomic(p, big);
  EXPECT_EQ(read_text_file(p), big);
  write_file_atomic(p, "");  // an empty file is a file
  EXPECT_TRUE(fs::exists(p));
  EXPECT_EQ(fs::file_size(p), 0u);
  EXPECT_EQ(files_in_dir(), 1u);  // no temporary left
}

TEST_F(AtomicFileTest, AnAbandonedWriteLeavesTheTargetAsItWas) {
  const std::string p = path("a.txt");
  write_file_atomic(p, "kept\n");
  {
    AtomicFile f(p);
    f.write("half of a new file");
    EXPECT_TRUE(fs::exists(f.temp_path()));
    EXPECT_EQ(read_text_file(p), "kept\n");  // nothing visible before commit()
  }  // destroyed without commit(), e.g. by an exception on the way
  EXPECT_EQ(read_text_file(p), "kept\n");
  EXPECT_EQ(files_in_dir(), 1u);
}

TEST_F(AtomicFileTest, WritersThatOpenTheFileByNameCommitToo) {
  const std::string p = path("model.bin");
  write_file_atomic(p, "previous");
  AtomicFile f(p);
  EXPECT_EQ(f.temp_path(), p + ".tmp");
  std::ofstream(f.temp_path(), std::ios::binary) << "written by another library";
  EXPECT_EQ(read_text_file(p), "previous");
  EXPECT_EQ(f.commit(), int64_t(std::string("written by another library").size()));
  EXPECT_EQ(read_text_file(p), "written by another library");
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  expect_error([&] { f.commit(); }, "already committed");
}

TEST_F(AtomicFileTest, AStaleTemporaryOfAKilledWriterIsOverwritten) {
  const std::string p = path("a.txt");
  std::ofstream(p + ".tmp") << "garbage left by a kill, longer than what comes next";
  write_file_atomic(p, "new");
  EXPECT_EQ(read_text_file(p), "new");
  EXPECT_EQ(files_in_dir(), 1u);
}

TEST_F(AtomicFileTest, ErrorsNameTheTargetAndTouchNothing) {
  expect_error([&] { write_file_atomic(path("no/such/folder/a.txt"), "x"); }, "cannot write " + path("no/such/folder/a.txt"));
  const std::string p = path("a.txt");
  write_file_atomic(p, "kept");
  fs::create_directories(p + ".tmp");  // a folder is in the way of the temporary
  expect_error([&] { write_file_atomic(p, "new"); }, "cannot write " + p);
  EXPECT_EQ(read_text_file(p), "kept");
  fs::remove(p + ".tmp");
  const std::string folder = path("target-is-a-folder");
  fs::create_directories(folder + "/inside");
  expect_error([&] { write_file_atomic(folder, "x"); }, "cannot write " + folder + ": rename from");
  EXPECT_TRUE(fs::is_directory(folder + "/inside"));
  EXPECT_FALSE(fs::exists(folder + ".tmp"));
}

TEST_F(AtomicFileTest, ParallelWritersUseTheirOwnTemporariesAndDeadOnesAreCleanedUp) {
  const std::string p = path("cache.bin");
  AtomicFile a(p, AtomicFile::Writers::many), b(p, AtomicFile::Writers::many);
  EXPECT_NE(a.temp_path(), b.temp_path());
  a.write("from a");
  b.write("from b");
  a.commit();
  EXPECT_EQ(read_text_file(p), "from a");
  b.commit();
  EXPECT_EQ(read_text_file(p), "from b");
  // A temporary named after a process that has exited is a dead writer's: the next writer removes it. One of a
  // running process (this one) is left alone.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  const std::string dead = p + "." + std::to_string(child) + ".0.tmp";
  const std::string alive = p + "." + std::to_string(::getpid()) + ".999.tmp";
  const std::string unrelated = p + ".notes.tmp";
  for (const auto& t : {dead, alive, unrelated}) std::ofstream(t) << "partial";
  write_file_atomic(path("other.bin"), "x");  // another target's writer does not look at these
  EXPECT_TRUE(fs::exists(dead));
  AtomicFile c(p, AtomicFile::Writers::many);
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(alive));
  EXPECT_TRUE(fs::exists(unrelated));
}

TEST_F(AtomicFileTest, RenameDurablyMovesACompleteFileIntoPlace) {
  write_file_atomic(path("checkpoint.h5"), "final");
  rename_durably(path("checkpoint.h5"), path("model.h5"));
  EXPECT_EQ(read_text_file(path("model.h5")), "final");
  EXPECT_FALSE(fs::exists(path("checkpoint.h5")));
  expect_error([&] { rename_durably(path("checkpoint.h5"), path("model.h5")); }, "cannot rename " + path("checkpoint.h5"));
  EXPECT_EQ(read_text_file(path("model.h5")), "final");
}

}  // namespace
}  // namespace pt::test
