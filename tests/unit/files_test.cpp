#include "store/files.hpp"

#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "qvm/error.hpp"
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

namespace fs = std::filesystem;

// What a test checks a victim file by: its content and when it was last written.
struct Seen {
  std::string content;
  long long mtime_ns = 0;
  bool operator==(const Seen&) const = default;
};

Seen seen(const fs::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return {"<missing>", 0};
  return {testing::read_file(file), st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec};
}

// The message of the qvm::Error that `action` throws, or "" if it throws none.
template <typename Action>
std::string error_of(Action action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// The old temp name was the pid: anyone could plant it as a symlink to a file of the
// writer's and have the state written into that file.
TEST(WriteFileAtomicallyTest, APlantedTempNameIsNeverWrittenThrough) {
  testing::TempDir dir;
  const fs::path victim = dir.write("victim", "root's secret\n");
  const Seen before = seen(victim);
  const fs::path folder = dir / "vm";
  fs::create_directory(folder);
  for (const std::string& temp : {".tmp." + std::to_string(::getpid()),
                                  ".tmp" + std::to_string(::getpid()), std::string(".tmp")}) {
    fs::create_symlink(victim, folder / ("state.json" + temp));
  }
  write_file_atomically(folder / "state.json", "{}\n");
  EXPECT_EQ(seen(victim), before);
  EXPECT_EQ(testing::read_file(folder / "state.json"), "{}\n");
  EXPECT_FALSE(fs::is_symlink(folder / "state.json"));
  // The planted names are left alone, and no temp file of ours is left beside them.
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(folder)) names.push_back(entry.path().filename());
  EXPECT_EQ(names.size(), 4u);
}

TEST(WriteFileAtomicallyTest, ASymlinkAsTheTargetIsReplacedNeverFollowed) {
  testing::TempDir dir;
  const fs::path victim = dir.write("victim", "root's secret\n");
  const Seen before = seen(victim);
  fs::create_symlink(victim, dir / "state.json");
  write_file_atomically(dir / "state.json", "{}\n");
  EXPECT_EQ(seen(victim), before);
  EXPECT_FALSE(fs::is_symlink(dir / "state.json"));
  EXPECT_EQ(testing::read_file(dir / "state.json"), "{}\n");
}

TEST(WriteFileAtomicallyTest, AFolderOthersCanWriteToOrASymlinkedOneIsRefused) {
  testing::TempDir dir;
  const fs::path open_folder = dir / "open";
  fs::create_directory(open_folder);
  fs::permissions(open_folder, fs::perms::all);
  EXPECT_EQ(error_of([&] { write_file_atomically(open_folder / "state.json", "{}\n"); }),
            open_folder.string() +
                " can be written by other users (mode 0777); refusing to use it; "
                "make it private with chmod go-w " +
                open_folder.string());
  EXPECT_FALSE(fs::exists(open_folder / "state.json"));
  EXPECT_TRUE(fs::is_empty(open_folder));

  fs::create_directory(dir / "real");
  fs::create_directory_symlink(dir / "real", dir / "link");
  EXPECT_EQ(
      error_of([&] { write_file_atomically(dir / "link" / "state.json", "{}\n"); }),
      (dir / "link").string() + " is not a directory (a symlink or file is in the way); remove it");
  EXPECT_TRUE(fs::is_empty(dir / "real"));
}

TEST(WriteFileAtomicallyTest, AFolderOfAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a folder to nobody";
  const struct passwd* nobody = ::getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  testing::TempDir dir;
  const fs::path theirs = dir / "theirs";
  fs::create_directory(theirs);
  ASSERT_EQ(::chown(theirs.c_str(), nobody->pw_uid, nobody->pw_gid), 0);
  EXPECT_EQ(error_of([&] { write_file_atomically(theirs / "state.json", "{}\n"); }),
            theirs.string() + " belongs to uid " + std::to_string(nobody->pw_uid) +
                ", not to this user; refusing to use it");
  EXPECT_TRUE(fs::is_empty(theirs));
}

TEST(MakePrivateDirTest, CreatesEveryMissingFolderPrivateAndAcceptsItAgain) {
  testing::TempDir dir;
  const fs::path deep = dir / "a" / "b" / "c";
  PrivateDir made = make_private_dir(deep);
  EXPECT_GE(made.fd(), 0);
  EXPECT_EQ(made.path(), deep);
  for (const fs::path& folder : {dir / "a", dir / "a" / "b", deep}) {
    struct stat st {};
    ASSERT_EQ(::lstat(folder.c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode)) << folder;
    EXPECT_EQ(st.st_mode & 0777, 0700u) << folder;
  }
  // Files made through the descriptor land in that folder.
  write_file_atomically(made, "x", "1\n");
  EXPECT_EQ(testing::read_file(deep / "x"), "1\n");
  EXPECT_NO_THROW(make_private_dir(deep));
  EXPECT_NO_THROW(make_private_dir(deep.string() + "/"));
  EXPECT_NO_THROW(open_private_dir(deep));
}

TEST(MakePrivateDirTest, ASymlinkAFileOrAFolderOthersCanWriteToIsRefusedWithTheFix) {
  testing::TempDir dir;
  fs::create_directory(dir / "elsewhere");
  fs::create_directory_symlink(dir / "elsewhere", dir / "link");
  EXPECT_EQ(
      error_of([&] { make_private_dir(dir / "link"); }),
      (dir / "link").string() + " is not a directory (a symlink or file is in the way); remove it");
  EXPECT_EQ(error_of([&] { make_private_dir(dir / "link", "set XDG_RUNTIME_DIR"); }),
            (dir / "link").string() +
                " is not a directory (a symlink or file is in the way); set XDG_RUNTIME_DIR");
  // A dangling symlink is not created through either.
  fs::create_symlink(dir / "nowhere", dir / "dangling");
  EXPECT_NE(error_of([&] { make_private_dir(dir / "dangling"); }), "");
  EXPECT_FALSE(fs::exists(dir / "nowhere"));
  dir.write("file", "");
  EXPECT_NE(error_of([&] { make_private_dir(dir / "file"); }).find("is not a directory"),
            std::string::npos);

  for (const fs::perms mode : {fs::perms::all, fs::perms::owner_all | fs::perms::group_write,
                               fs::perms::all | fs::perms::sticky_bit}) {
    const fs::path open_folder = dir / "open";
    fs::create_directory(open_folder);
    fs::permissions(open_folder, mode);
    const std::string message = error_of([&] { make_private_dir(open_folder); });
    EXPECT_NE(message.find(open_folder.string() + " can be written by other users (mode "),
              std::string::npos)
        << message;
    fs::remove(open_folder);
  }
}

TEST(MakePrivateDirTest, AFolderOfAnotherUserIsRefusedAndNothingIsMadeInIt) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a folder to nobody";
  const struct passwd* nobody = ::getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  testing::TempDir dir;
  const fs::path theirs = dir / "theirs";
  fs::create_directory(theirs, dir.path());
  fs::permissions(theirs, fs::perms::owner_all);
  ASSERT_EQ(::chown(theirs.c_str(), nobody->pw_uid, nobody->pw_gid), 0);
  EXPECT_EQ(error_of([&] { make_private_dir(theirs); }),
            theirs.string() + " belongs to uid " + std::to_string(nobody->pw_uid) +
                ", not to this user; refusing to use it");
  EXPECT_EQ(error_of([&] { open_private_dir(theirs); }),
            theirs.string() + " belongs to uid " + std::to_string(nobody->pw_uid) +
                ", not to this user; refusing to use it");
  EXPECT_TRUE(fs::is_empty(theirs));
}

TEST(AppendLineTest, ASymlinkIsRefusedNeverFollowed) {
  testing::TempDir dir;
  const fs::path victim = dir.write("victim", "root's secret\n");
  const Seen before = seen(victim);
  fs::create_symlink(victim, dir / "events.jsonl");
  EXPECT_NE(error_of([&] {
              append_line(dir / "events.jsonl", "{\"event\": \"x\"}");
            }).find("cannot open " + (dir / "events.jsonl").string()),
            std::string::npos);
  EXPECT_EQ(seen(victim), before);
  append_line(dir / "new.jsonl", "one");
  append_line(dir / "new.jsonl", "two");
  EXPECT_EQ(testing::read_file(dir / "new.jsonl"), "one\ntwo\n");
}

TEST(FileLockTest, ASymlinkedLockFileIsRefusedNeverWrittenThrough) {
  testing::TempDir dir;
  const fs::path victim = dir.write("victim", "root's secret\n");
  const Seen before = seen(victim);
  fs::create_symlink(victim, dir / "operation.lock");
  EXPECT_NE(error_of([&] {
              FileLock::try_acquire(dir / "operation.lock", "qvm up (pid 1)");
            }).find("cannot open lock file " + (dir / "operation.lock").string()),
            std::string::npos);
  EXPECT_FALSE(FileLock::is_held(dir / "operation.lock"));
  EXPECT_EQ(FileLock::holder(dir / "operation.lock"), "");
  EXPECT_EQ(seen(victim), before);
}

}  // namespace
}  // namespace qvm::store
