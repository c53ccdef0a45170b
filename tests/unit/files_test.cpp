#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "store/files.hpp"
#include "support/temp_dir.hpp"

namespace qvm::store {
namespace {

TEST(FileLockTest, ASecondTakerIsRefusedAndCanReadWhoHoldsIt) {
  testing::TempDir dir;
  const auto path = dir / "operation.lock";
  auto held = FileLock::try_acquire(path, "qvm up (pid 10)");
  ASSERT_TRUE(held);
  EXPECT_TRUE(FileLock::is_held(path));
  EXPECT_FALSE(FileLock::try_acquire(path, "qvm down (pid 11)"));
  EXPECT_EQ(FileLock::holder(path), "qvm up (pid 10)");
  held->release();
  EXPECT_FALSE(FileLock::is_held(path));
  EXPECT_TRUE(FileLock::try_acquire(path, "qvm down (pid 11)"));
}

// The holder text is overwritten in place and then cut to length (not truncated to zero
// first, which frees the file's block: a synchronous discard on `-o discard` mounts). A
// shorter holder must still leave nothing of a longer one behind.
TEST(FileLockTest, AShorterHolderReplacesALongerOneWhole) {
  testing::TempDir dir;
  const auto path = dir / "operation.lock";
  FileLock::try_acquire(path, "qvm snapshot create --name nightly (pid 123456)")->release();
  FileLock::try_acquire(path, "qvm up (pid 7)")->release();
  EXPECT_EQ(FileLock::holder(path), "qvm up (pid 7)");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(std::string_view("qvm up (pid 7)").size()));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

// Descriptors this process holds on files that have been unlinked, by their old path.
std::vector<std::string> held_deleted_files() {
  std::vector<std::string> held;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const std::string target = std::filesystem::read_symlink(entry.path(), ec).string();
    if (target.ends_with(" (deleted)")) held.push_back(target.substr(0, target.size() - 10));
  }
  return held;
}

// A supervisor's save keeps the replaced state.json open until after its notify: on a
// `-o discard` mount, freeing the old file's blocks inside the rename waited on the disk.
TEST(WriteFileAtomicallyTest, TheReplacedFileIsFreedWhenReleasedNotInTheRename) {
  testing::TempDir dir;
  const auto path = dir / "state.json";
  write_file_atomically(path, "{\"state\": \"starting\"}\n");
  {
    ReplacedFiles replaced;
    write_file_atomically(path, "{\"state\": \"running\"}\n", std::filesystem::perms::owner_read |
                          std::filesystem::perms::owner_write, Durability::atomic, &replaced);
    EXPECT_EQ(read_file_if_exists(path), "{\"state\": \"running\"}\n");
    EXPECT_EQ(held_deleted_files(), std::vector<std::string>{path.string()});
    replaced.release();
    EXPECT_TRUE(held_deleted_files().empty());

    // Nothing to hold when there was nothing to replace; the destructor releases the rest.
    write_file_atomically(dir / "new.json", "{}\n", std::filesystem::perms::owner_read,
                          Durability::atomic, &replaced);
    EXPECT_TRUE(held_deleted_files().empty());
    write_file_atomically(dir / "new.json", "[]\n", std::filesystem::perms::owner_read,
                          Durability::atomic, &replaced);
    EXPECT_EQ(held_deleted_files().size(), 1u);
  }
  EXPECT_TRUE(held_deleted_files().empty());
  EXPECT_EQ(read_file_if_exists(dir / "new.json"), "[]\n");
}

}  // namespace
}  // namespace qvm::store
