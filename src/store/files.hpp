#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qvm::store {

/// How much a write must survive: any process crash (`atomic`: temp file and rename), or
/// also a power loss (`durable`: fsync of the file before and of its folder after).
enum class Durability { atomic, durable };

/// Files that a replace unlinked, held open so that the file system frees their blocks when
/// the holder lets go rather than inside the rename. On a mount with `-o discard` (common
/// on cloud VMs) freeing a block waits for the disk to discard it, which a supervisor would
/// rather do after it has told `qvm up` the VM is ready than before.
class ReplacedFiles {
 public:
  ReplacedFiles() = default;
  ~ReplacedFiles();
  ReplacedFiles(const ReplacedFiles&) = delete;
  ReplacedFiles& operator=(const ReplacedFiles&) = delete;

  /// Takes ownership of an open descriptor of a replaced file.
  void keep(int fd);
  /// Closes them all: the last reference goes, and their blocks are freed now.
  void release();

 private:
  std::vector<int> fds_;
};

/// An open folder that was checked to be a real directory (not a symlink) owned by this
/// user and writable by no one else, so that nothing another user controls can be in it.
/// Files made through `fd()` (openat, renameat) stay in that very folder even if a path
/// leading to it changes afterwards. Closes the descriptor on destruction.
class PrivateDir {
 public:
  PrivateDir(PrivateDir&& other) noexcept;
  PrivateDir& operator=(PrivateDir&& other) noexcept;
  PrivateDir(const PrivateDir&) = delete;
  PrivateDir& operator=(const PrivateDir&) = delete;
  ~PrivateDir();

  /// The O_DIRECTORY descriptor, valid while this object lives.
  int fd() const { return fd_; }
  /// The path it was opened by, for messages.
  const std::filesystem::path& path() const { return path_; }

 private:
  friend PrivateDir open_private_dir(const std::filesystem::path&, std::string_view);
  friend PrivateDir make_private_dir(const std::filesystem::path&, std::string_view);
  PrivateDir(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::filesystem::path path_;
};

/// Opens the existing folder `dir` without following a symlink in its last component and
/// checks it as PrivateDir promises. Throws qvm::Error naming `dir` and the fix (`fix`
/// replaces the default advice) when it is missing, a symlink or file, another user's, or
/// writable by group or others.
PrivateDir open_private_dir(const std::filesystem::path& dir, std::string_view fix = {});

/// Creates `dir` and missing parents with mode 0700, each made through its parent's
/// descriptor and checked as it is made, then checks `dir` as open_private_dir does (an
/// existing `dir` included). Parents that already exist are not qvm's and are not checked.
PrivateDir make_private_dir(const std::filesystem::path& dir, std::string_view fix = {});

/// Replaces `path` with `content` so that readers see the old or the new file, never a
/// mix, even across a crash: temp file in the same folder, fsync, rename, fsync folder.
/// The folder must pass open_private_dir's check; the temp file gets a random name and is
/// created with O_EXCL | O_NOFOLLOW, so nothing planted there is written through.
/// With `replaced`, the file that was at `path` stays open there until released.
/// Throws qvm::Error with the path and the OS reason.
void write_file_atomically(const std::filesystem::path& path, std::string_view content,
                           std::filesystem::perms perms = std::filesystem::perms::owner_read |
                                                          std::filesystem::perms::owner_write,
                           Durability durability = Durability::durable,
                           ReplacedFiles* replaced = nullptr);

/// write_file_atomically for the file `name` in the already checked folder `dir`.
void write_file_atomically(const PrivateDir& dir, const std::string& name, std::string_view content,
                           std::filesystem::perms perms = std::filesystem::perms::owner_read |
                                                          std::filesystem::perms::owner_write,
                           Durability durability = Durability::durable,
                           ReplacedFiles* replaced = nullptr);

/// The whole file, or nullopt if it does not exist. Throws qvm::Error on other failures.
std::optional<std::string> read_file_if_exists(const std::filesystem::path& path);

/// Appends one line (a newline is added) with a single write(2); a symlink at `path` is
/// refused, never followed. Throws qvm::Error.
void append_line(const std::filesystem::path& path, std::string_view line);

/// An exclusive flock(2) on a file, held until destruction. Locks vanish with the process,
/// so a crash never leaves one behind.
class FileLock {
 public:
  /// Tries to take the lock without waiting; nullopt if another process holds it. `holder`
  /// is written into the file so that a refused caller can say who holds it. A symlink at
  /// `path` is refused (qvm::Error), never followed.
  static std::optional<FileLock> try_acquire(const std::filesystem::path& path,
                                             std::string_view holder);
  /// True if some process holds the lock on `path` right now.
  static bool is_held(const std::filesystem::path& path);
  /// What the current or last holder wrote ("" if nothing, or if `path` is a symlink).
  static std::string holder(const std::filesystem::path& path);

  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&& other) noexcept;
  ~FileLock();
  /// Releases the lock now.
  void release();

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

/// RFC 3339 UTC with milliseconds, "2026-11-24T08:45:43.123Z".
std::string format_time(std::chrono::system_clock::time_point time);
/// The inverse of format_time; nullopt if malformed.
std::optional<std::chrono::system_clock::time_point> parse_time(std::string_view text);

}  // namespace qvm::store
