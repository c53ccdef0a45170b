#include "store/files.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>

#include "qvm/error.hpp"

namespace qvm::store {
namespace fs = std::filesystem;
namespace {

[[noreturn]] void fail(const std::string& what, const fs::path& path, int err) {
  std::string fix;
  if (err == ENOSPC) fix = " (the disk is full: free some space on it, then retry)";
  if (err == EDQUOT) fix = " (the disk quota is used up: free some space on it, then retry)";
  throw Error(what + " " + path.string() + ": " + std::strerror(err) + fix);
}

void write_all(int fd, std::string_view data, const fs::path& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot write", path, errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

ReplacedFiles::~ReplacedFiles() { release(); }

void ReplacedFiles::keep(int fd) { fds_.push_back(fd); }

void ReplacedFiles::release() {
  for (int fd : fds_) ::close(fd);
  fds_.clear();
}

PrivateDir::PrivateDir(PrivateDir&& other) noexcept
    : fd_(other.fd_), path_(std::move(other.path_)) {
  other.fd_ = -1;
}

PrivateDir& PrivateDir::operator=(PrivateDir&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    path_ = std::move(other.path_);
    other.fd_ = -1;
  }
  return *this;
}

PrivateDir::~PrivateDir() {
  if (fd_ >= 0) ::close(fd_);
}

namespace {

std::string octal_mode(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

// Throws unless `st` is a folder of this user's that no one else can write to.
void check_private(const struct stat& st, const fs::path& dir, std::string_view fix) {
  if (!S_ISDIR(st.st_mode)) {
    throw Error(dir.string() + " is not a directory (a symlink or file is in the way); " +
                (fix.empty() ? std::string("remove it") : std::string(fix)));
  }
  if (st.st_uid != ::geteuid()) {
    throw Error(dir.string() + " belongs to uid " + std::to_string(st.st_uid) +
                ", not to this user; refusing to use it" +
                (fix.empty() ? "" : "; " + std::string(fix)));
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    throw Error(
        dir.string() + " can be written by other users (mode " + octal_mode(st.st_mode) +
        "); refusing to use it; " +
        (fix.empty() ? "make it private with chmod go-w " + dir.string() : std::string(fix)));
  }
}

// `name` in the folder `parent_fd`, opened without following a symlink and checked; `dir`
// is its full path for messages. Returns the descriptor or throws.
int open_checked_dir(int parent_fd, const std::string& name, const fs::path& dir,
                     std::string_view fix) {
  int fd = ::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    // Whatever is in the way (a symlink, a file, another user's folder this one cannot
    // open) is described by what it is, not by the errno it caused.
    struct stat st {};
    if (err != ENOENT && ::fstatat(parent_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      check_private(st, dir, fix);
    }
    fail("cannot open", dir, err);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail("cannot stat", dir, err);
  }
  try {
    check_private(st, dir, fix);
  } catch (...) {
    ::close(fd);
    throw;
  }
  return fd;
}

// An absolute, normal form of `dir` without a trailing slash, so that parent_path() and
// filename() name its components.
fs::path normal_dir(const fs::path& dir) {
  fs::path normal = fs::absolute(dir).lexically_normal();
  if (normal.has_parent_path() && normal.filename().empty()) normal = normal.parent_path();
  return normal;
}

// A name no one can guess in advance, so a temp file cannot be planted before it is made.
std::string random_suffix() {
  unsigned char bytes[8];
  if (::getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) {
    std::random_device device;
    for (auto& byte : bytes) byte = static_cast<unsigned char>(device());
  }
  char text[17];
  for (std::size_t i = 0; i < sizeof bytes; ++i) std::snprintf(text + 2 * i, 3, "%02x", bytes[i]);
  return text;
}

}  // namespace

PrivateDir open_private_dir(const fs::path& dir, std::string_view fix) {
  const fs::path normal = normal_dir(dir);
  if (normal == normal.root_path()) {
    int fd = ::open(normal.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail("cannot open", normal, errno);
    ::close(fd);
    throw Error(normal.string() +
                " is shared by every user; refusing to use it as a private folder");
  }
  // The folders above belong to whoever set them up (/tmp, /run/user/1000, a home); only
  // the last component is qvm's.
  const fs::path parent = normal.parent_path();
  int parent_fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (parent_fd < 0) fail("cannot open", parent, errno);
  try {
    int fd = open_checked_dir(parent_fd, normal.filename().string(), dir, fix);
    ::close(parent_fd);
    return PrivateDir(fd, dir);
  } catch (...) {
    ::close(parent_fd);
    throw;
  }
}

PrivateDir make_private_dir(const fs::path& dir, std::string_view fix) {
  const fs::path normal = normal_dir(dir);
  // The missing tail of the path, outermost first; what exists above it is not qvm's.
  std::vector<std::string> missing;
  fs::path existing = normal;
  struct stat st {};
  while (existing != existing.root_path() && ::lstat(existing.c_str(), &st) != 0 &&
         errno == ENOENT) {
    missing.insert(missing.begin(), existing.filename().string());
    existing = existing.parent_path();
  }
  if (missing.empty()) return open_private_dir(dir, fix);
  int parent_fd = ::open(existing.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (parent_fd < 0) fail("cannot open", existing, errno);
  fs::path made = existing;
  try {
    for (const std::string& name : missing) {
      made /= name;
      // Another process may make it first; either way it is checked before it is used.
      if (::mkdirat(parent_fd, name.c_str(), 0700) != 0 && errno != EEXIST)
        fail("cannot create", made, errno);
      int fd = open_checked_dir(parent_fd, name, made == normal ? dir : made, fix);
      ::close(parent_fd);
      parent_fd = fd;
    }
  } catch (...) {
    ::close(parent_fd);
    throw;
  }
  return PrivateDir(parent_fd, dir);
}

void write_file_atomically(const fs::path& path, std::string_view content, fs::perms perms,
                           Durability durability, ReplacedFiles* replaced) {
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  write_file_atomically(open_private_dir(dir), path.filename().string(), content, perms, durability,
                        replaced);
}

void write_file_atomically(const PrivateDir& dir, const std::string& name, std::string_view content,
                           fs::perms perms, Durability durability, ReplacedFiles* replaced) {
  const fs::path path = dir.path() / name;
  std::string temp_name;
  int fd = -1;
  // A clash with a name someone made (or a crash left) is never written through: O_EXCL
  // refuses it and another random name is tried.
  for (int attempt = 0; fd < 0; ++attempt) {
    temp_name = name + ".tmp." + random_suffix();
    fd = ::openat(dir.fd(), temp_name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  static_cast<mode_t>(perms));
    if (fd < 0 && (errno != EEXIST || attempt >= 16))
      fail("cannot create", dir.path() / temp_name, errno);
  }
  const fs::path temp = dir.path() / temp_name;
  try {
    write_all(fd, content, temp);
    if (durability == Durability::durable && ::fsync(fd) != 0) fail("cannot fsync", temp, errno);
  } catch (...) {
    ::close(fd);
    ::unlinkat(dir.fd(), temp_name.c_str(), 0);
    throw;
  }
  ::close(fd);
  // Opened before the rename unlinks it; nothing is lost if it does not exist.
  const int old_fd =
      replaced ? ::openat(dir.fd(), name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
               : -1;
  if (::renameat(dir.fd(), temp_name.c_str(), dir.fd(), name.c_str()) != 0) {
    int err = errno;
    ::unlinkat(dir.fd(), temp_name.c_str(), 0);
    if (old_fd >= 0) ::close(old_fd);
    fail("cannot replace", path, err);
  }
  if (old_fd >= 0) replaced->keep(old_fd);
  // The rename is durable only once the folder itself is on disk.
  if (durability == Durability::durable) ::fsync(dir.fd());
}

std::optional<std::string> read_file_if_exists(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) return std::nullopt;
    fail("cannot open", path, errno);
  }
  std::string content;
  char buffer[65536];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      fail("cannot read", path, err);
    }
    if (n == 0) break;
    content.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return content;
}

void append_line(const fs::path& path, std::string_view line) {
  // O_NONBLOCK: a FIFO in the way fails at once instead of hanging the writer.
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
                  0600);
  if (fd < 0) fail("cannot open", path, errno);
  std::string data(line);
  data += '\n';
  try {
    write_all(fd, data, path);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

std::optional<FileLock> FileLock::try_acquire(const fs::path& path, std::string_view holder) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) fail("cannot open lock file", path, errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) return std::nullopt;
    fail("cannot lock", path, err);
  }
  // Overwritten in place, then cut to length: truncating to zero first would free the
  // file's block and allocate another one, which costs a synchronous discard on a file
  // system mounted with -o discard (common on cloud VMs), twice per qvm command.
  ssize_t written = ::pwrite(fd, holder.data(), holder.size(), 0);
  if (written >= 0) {
    int ignored = ::ftruncate(fd, written);
    (void)ignored;
  }
  return FileLock(fd);
}

bool FileLock::is_held(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return false;
  // A shared probe: it conflicts with the holder's exclusive lock but not with other probes.
  bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return held;
}

std::string FileLock::holder(const fs::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return "";
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return "";
  // A holder is one short line; more than that is not what try_acquire wrote.
  char text[4096];
  ssize_t n = ::pread(fd, text, sizeof text, 0);
  ::close(fd);
  return n > 0 ? std::string(text, static_cast<std::size_t>(n)) : "";
}

FileLock::FileLock(FileLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    release();
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

FileLock::~FileLock() { release(); }

void FileLock::release() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

std::string format_time(std::chrono::system_clock::time_point time) {
  using namespace std::chrono;
  auto ms = duration_cast<milliseconds>(time.time_since_epoch()).count();
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  if (ms < 0 && ms % 1000 != 0) --seconds;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[96];
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<int>(((ms % 1000) + 1000) % 1000));
  return text;
}

std::optional<std::chrono::system_clock::time_point> parse_time(std::string_view text) {
  std::tm utc{};
  int millis = 0;
  char z = 0;
  std::string copy(text);
  if (std::sscanf(copy.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &utc.tm_year, &utc.tm_mon,
                  &utc.tm_mday, &utc.tm_hour, &utc.tm_min, &utc.tm_sec, &millis, &z) != 8 ||
      z != 'Z' || copy.size() != 24) {
    return std::nullopt;
  }
  utc.tm_year -= 1900;
  utc.tm_mon -= 1;
  std::time_t seconds = timegm(&utc);
  // system_clock counts nanoseconds in 64 bits (years 1678 to 2262); from_time_t overflows
  // beyond that, which a corrupt state file must not reach.
  constexpr std::time_t kLimit =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::duration::max())
          .count() -
      1;
  if (seconds < -kLimit || seconds > kLimit) return std::nullopt;
  return std::chrono::system_clock::from_time_t(seconds) + std::chrono::milliseconds(millis);
}

}  // namespace qvm::store
