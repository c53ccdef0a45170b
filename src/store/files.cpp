#include "store/files.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>

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

void write_file_atomically(const fs::path& path, std::string_view content, fs::perms perms,
                           Durability durability, ReplacedFiles* replaced) {
  fs::path temp = path;
  temp += ".tmp." + std::to_string(::getpid());
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                  static_cast<mode_t>(perms));
  if (fd < 0) fail("cannot create", temp, errno);
  try {
    write_all(fd, content, temp);
    if (durability == Durability::durable && ::fsync(fd) != 0) fail("cannot fsync", temp, errno);
  } catch (...) {
    ::close(fd);
    ::unlink(temp.c_str());
    throw;
  }
  ::close(fd);
  // Opened before the rename unlinks it; nothing is lost if it does not exist.
  const int old_fd = replaced ? ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(temp.c_str());
    if (old_fd >= 0) ::close(old_fd);
    fail("cannot replace", path, err);
  }
  if (old_fd >= 0) replaced->keep(old_fd);
  // The rename is durable only once the folder itself is on disk.
  if (durability != Durability::durable) return;
  int dir = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
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
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
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

void make_private_dir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir.parent_path(), ec)) make_private_dir(dir.parent_path());
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) fail("cannot create", dir, errno);
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) fail("cannot stat", dir, errno);
  if (!S_ISDIR(st.st_mode)) {
    throw Error(dir.string() + " is not a directory (a symlink or file is in the way); remove it");
  }
  if (st.st_uid != ::geteuid()) {
    throw Error(dir.string() + " belongs to uid " + std::to_string(st.st_uid) +
                ", not to this user; refusing to use it");
  }
}

std::optional<FileLock> FileLock::try_acquire(const fs::path& path, std::string_view holder) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
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
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  // A shared probe: it conflicts with the holder's exclusive lock but not with other probes.
  bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return held;
}

std::string FileLock::holder(const fs::path& path) {
  auto text = read_file_if_exists(path);
  return text ? *text : "";
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
