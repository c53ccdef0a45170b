#include "store/owned_files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "store/unique_fd.hpp"

namespace qvm::store {
namespace fs = std::filesystem;
namespace {

// The real path of an open folder, as the kernel resolved it (symlinks and all).
std::optional<fs::path> real_path_of(int dir_fd) {
  std::error_code ec;
  fs::path real = fs::read_symlink("/proc/self/fd/" + std::to_string(dir_fd), ec);
  if (ec) return std::nullopt;
  return real;
}

bool is_within(const fs::path& inner, const fs::path& outer) {
  auto [end_outer, end_inner] =
      std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end());
  return end_outer == outer.end();
}

struct Examined {
  DeletionOutcome outcome;
  int dir_fd = -1;  // the open folder, for the unlink; -1 unless the file may go
  std::string name;
};

// Everything deletion_refused checks, on a folder opened once, so the unlink that follows
// acts on the very folder that was checked.
Examined examine(const fs::path& path, const DeletionRule& rule) {
  auto kept = [](std::string why) {
    return Examined{{DeletionOutcome::Kind::kept, std::move(why)}, -1, ""};
  };
  const Examined absent{{DeletionOutcome::Kind::absent, ""}, -1, ""};
  if (!path.is_absolute()) return kept("is not an absolute path");
  for (const auto& part : path.relative_path()) {
    if (part == "." || part == "..") return kept("has a \".\" or \"..\" in its path");
  }
  const std::string name = path.filename().string();
  if (name.empty()) return kept("names a folder, not a file");
  const int dir_fd = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) {
    if (errno == ENOENT) return absent;
    return kept(std::string("its folder cannot be opened: ") + std::strerror(errno));
  }
  // Deletable unless a check below says otherwise.
  Examined result{{DeletionOutcome::Kind::deleted, ""}, dir_fd, name};
  auto refuse = [&](std::string why) {
    ::close(dir_fd);
    return kept(std::move(why));
  };
  struct stat st {};
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    const int err = errno;
    ::close(dir_fd);
    if (err == ENOENT) return absent;
    return kept(std::string("cannot be inspected: ") + std::strerror(err));
  }
  if (S_ISLNK(st.st_mode)) return refuse("is a symbolic link, not an image qvm made");
  if (!S_ISREG(st.st_mode)) return refuse("is not a regular file");
  const FileIdentity identity{static_cast<std::uint64_t>(st.st_dev),
                              static_cast<std::uint64_t>(st.st_ino)};
  for (const NeededImage& needed : rule.needed) {
    if (identity_of(needed.path) == identity) {
      return refuse("is " + needed.why +
                    (needed.path == path ? "" : " (" + needed.path.string() + ")"));
    }
  }
  if (rule.created) {
    if (*rule.created != identity) {
      return refuse("is not the file qvm created there (its device and inode have changed since)");
    }
  } else {
    std::error_code ec;
    const fs::path folder = fs::canonical(rule.folder, ec);
    const std::optional<fs::path> real_parent = real_path_of(dir_fd);
    if (ec || !real_parent || !is_within(*real_parent, folder)) {
      return refuse("lies outside the VM's folder " + rule.folder.string());
    }
  }
  // An empty file holds nothing: it is what an image creation cut short leaves.
  if (rule.qcow2 && st.st_size > 0) {
    UniqueFd file(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    struct stat opened {};
    std::array<unsigned char, 4> magic{};
    if (file.get() < 0 || ::fstat(file.get(), &opened) != 0 || opened.st_dev != st.st_dev ||
        opened.st_ino != st.st_ino ||
        ::pread(file.get(), magic.data(), magic.size(), 0) != static_cast<ssize_t>(magic.size()) ||
        magic != std::array<unsigned char, 4>{'Q', 'F', 'I', 0xfb}) {
      return refuse("is not a qcow2 image");
    }
  }
  return result;
}

}  // namespace

std::optional<FileIdentity> identity_of(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileIdentity{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

std::optional<std::string> deletion_refused(const fs::path& path, const DeletionRule& rule) {
  Examined examined = examine(path, rule);
  if (examined.dir_fd >= 0) {
    ::close(examined.dir_fd);
    return std::nullopt;
  }
  if (examined.outcome.kind == DeletionOutcome::Kind::kept) return examined.outcome.reason;
  return std::nullopt;
}

DeletionOutcome remove_owned_file(const fs::path& path, const DeletionRule& rule) {
  Examined examined = examine(path, rule);
  if (examined.dir_fd < 0) return examined.outcome;
  UniqueFd dir(examined.dir_fd);
  if (::unlinkat(dir.get(), examined.name.c_str(), 0) != 0) {
    if (errno == ENOENT) return {DeletionOutcome::Kind::absent, ""};
    return {DeletionOutcome::Kind::kept, std::string("cannot be deleted: ") + std::strerror(errno)};
  }
  return {DeletionOutcome::Kind::deleted, ""};
}

}  // namespace qvm::store
