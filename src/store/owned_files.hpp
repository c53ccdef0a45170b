#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace qvm::store {

/// Which file a path named when qvm looked: its file system and inode.
struct FileIdentity {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  friend bool operator==(const FileIdentity&, const FileIdentity&) = default;
};

/// The identity of the file at `path` (symlinks followed); nullopt if there is none.
std::optional<FileIdentity> identity_of(const std::filesystem::path& path);

/// An image that must stay, and why (shown to the user when a deletion is refused).
struct NeededImage {
  std::filesystem::path path;
  std::string why;  // "the backing image of disk 0", "frozen by snapshot \"s1\"", ...
};

/// What a file must be for qvm to delete it: inside `folder` (its real folder is `folder`
/// or below it, no `.` or `..` in its path, not a symlink), or else exactly the file qvm
/// recorded creating (`created`); a regular file, with the qcow2 magic when `qcow2` (or empty: an
/// image whose creation was cut short); and none of `needed` (compared by device and inode, so no
/// other spelling or hard link of a needed image passes).
struct DeletionRule {
  std::filesystem::path folder;
  std::vector<NeededImage> needed;
  std::optional<FileIdentity> created;
  bool qcow2 = true;
};

/// What happened to one file qvm meant to delete.
struct DeletionOutcome {
  enum class Kind { deleted, absent, kept } kind = Kind::kept;
  std::string reason;  // for `kept`: why, as a clause ("lies outside the VM's folder /x")
};

/// Why `path` must not be deleted under `rule`, or nullopt if it may be (or is not there).
/// Never throws and never changes anything.
std::optional<std::string> deletion_refused(const std::filesystem::path& path,
                                            const DeletionRule& rule);

/// Deletes `path` if `rule` allows it, checked on the open folder right before the unlink.
/// Never throws: a refusal or a failed unlink is a `kept` outcome with its reason.
DeletionOutcome remove_owned_file(const std::filesystem::path& path, const DeletionRule& rule);

}  // namespace qvm::store
