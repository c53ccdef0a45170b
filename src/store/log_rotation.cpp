#include "store/log_rotation.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <fstream>
#include <chrono>
#include <thread>
#include <utility>
#include <cstring>

#include "qvm/error.hpp"
#include "store/unique_fd.hpp"

namespace qvm::store {
namespace fs = std::filesystem;
namespace {

// How much of what a follower read last it keeps, to tell its own data in a new .1 from a
// later generation's.
constexpr std::size_t kTailBytes = 256;

[[noreturn]] void fail(const std::string& what, const fs::path& path, int err) {
  throw Error(what + " " + path.string() + ": " + std::strerror(err));
}

void lock(int fd, int operation, const fs::path& path) {
  while (::flock(fd, operation) != 0) {
    if (errno != EINTR) fail("cannot lock", path, errno);
  }
}

void write_all(int fd, std::string_view data, const fs::path& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot write", path, errno);
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

// Appends to `out` what `fd` holds from `offset` on, at most `limit` bytes; returns how many.
std::uint64_t read_from(int fd, std::uint64_t offset, std::uint64_t limit, std::string& out,
                        const fs::path& path) {
  char buffer[65536];
  std::uint64_t total = 0;
  while (total < limit) {
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(sizeof buffer, limit - total));
    const ssize_t n = ::pread(fd, buffer, want, static_cast<off_t>(offset + total));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot read", path, errno);
    }
    if (n == 0) break;
    out.append(buffer, static_cast<std::size_t>(n));
    total += static_cast<std::uint64_t>(n);
  }
  return total;
}

}  // namespace

fs::path rotated_log(const fs::path& log) {
  fs::path rotated = log;
  rotated += ".1";
  return rotated;
}

bool rotate_log_if_over(const fs::path& log, std::uint64_t max_size, std::chrono::milliseconds patience,
                        bool cut_blocks) {
  UniqueFd fd(::open(log.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd.ok()) {
    if (errno == ENOENT) return false;
    fail("cannot open", log, errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail("cannot stat", log, errno);
  if (!S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) < max_size) return false;
  // A reader or an appender holds it for one read or one write. Not a blocking lock: a
  // reader that never lets go must not stall the supervisor, and flock lets new shared
  // holders in ahead of a waiting exclusive one, so readers in a loop would starve it.
  const auto give_up = std::chrono::steady_clock::now() + patience;
  while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) fail("cannot lock", log, errno);
    if (std::chrono::steady_clock::now() >= give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (::fstat(fd.get(), &st) != 0) fail("cannot stat", log, errno);
  const auto size = static_cast<std::uint64_t>(st.st_size);
  // Another rotation may have run while this one waited for the lock: rotating the fresh,
  // short log again would replace the whole generation in .1 with it, before any reader one
  // rotation behind had read that generation.
  if (size < max_size) return false;
  const bool legacy = size > 2 * max_size;
  const std::uint64_t start = legacy ? size - max_size : 0;
  // Where the file system can cut whole blocks off the front of a file (ext4, XFS), the
  // first `collapse` bytes move to .1 and the kernel removes them under the inode lock that
  // every write takes, so nothing a writer adds meanwhile is lost. Elsewhere (tmpfs, btrfs)
  // the file is copied and truncated.
  const auto block = static_cast<std::uint64_t>(st.st_blksize > 0 ? st.st_blksize : 4096);
  const std::uint64_t collapse = legacy || !cut_blocks ? 0 : (size - 1) / block * block;

  const fs::path rotated = rotated_log(log);
  fs::path temp = rotated;
  temp += ".tmp";
  // The folder is the VM's own (0700): a leftover temp file is ours, from a crash.
  ::unlink(temp.c_str());
  UniqueFd out(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!out.ok()) fail("cannot create", temp, errno);
  bool renamed = false;
  // Copies [from, until) of the log (until the end as it is now, if `until` is 0); returns
  // where it stopped.
  auto copy = [&](std::uint64_t from, std::uint64_t until) {
    char buffer[65536];
    while (until == 0 || from < until) {
      const std::size_t want =
          until == 0 ? sizeof buffer : static_cast<std::size_t>(std::min<std::uint64_t>(sizeof buffer, until - from));
      const ssize_t n = ::pread(fd.get(), buffer, want, static_cast<off_t>(from));
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("cannot read", log, errno);
      }
      if (n == 0) break;
      write_all(out.get(), std::string_view(buffer, static_cast<std::size_t>(n)), renamed ? rotated : temp);
      from += static_cast<std::uint64_t>(n);
    }
    return from;
  };
  try {
    const std::uint64_t copied = copy(start, collapse);
    // Rename before cutting: a crash in between leaves the lines twice, never nowhere.
    if (::rename(temp.c_str(), rotated.c_str()) != 0) fail("cannot rename " + temp.string() + " to", rotated, errno);
    renamed = true;
    if (collapse > 0 &&
        ::fallocate(fd.get(), FALLOC_FL_COLLAPSE_RANGE, 0, static_cast<off_t>(collapse)) == 0) {
      return true;
    }
    // Copy the rest and truncate. Writers hold the log with O_APPEND: their next write
    // lands at the new end, 0, and the file is not left sparse. Bytes they add between the
    // last read and the truncation are lost.
    copy(copied, 0);
  } catch (...) {
    if (!renamed) ::unlink(temp.c_str());
    throw;
  }
  if (::ftruncate(fd.get(), 0) != 0) fail("cannot truncate", log, errno);
  return true;
}

void append_to_log(const fs::path& log, std::string_view line, std::uint64_t max_size) {
  std::uint64_t size = 0;
  {
    UniqueFd fd(::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd.ok()) fail("cannot open", log, errno);
    // Shared: appenders do not wait for each other, only for a rotation in progress (whose
    // truncation would otherwise erase this line after its copy was taken).
    lock(fd.get(), LOCK_SH, log);
    std::string data(line);
    data += '\n';
    write_all(fd.get(), data, log);
    struct stat st {};
    if (::fstat(fd.get(), &st) == 0) size = static_cast<std::uint64_t>(st.st_size);
  }
  // Copied and truncated, never cut at a block: every line is written under the lock, so
  // none is lost, and .1 begins and ends with a whole line, as JSON lines must.
  if (size >= max_size) rotate_log_if_over(log, max_size, std::chrono::milliseconds(50), false);
}

LogFollower::LogFollower(fs::path log) : log_(std::move(log)) {}

LogFollower::LogFollower(fs::path log, std::uint64_t offset) : log_(std::move(log)), offset_(offset) {
  rotated_fd_.reset(::open(rotated_log(log_).c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  struct stat st {};
  if (rotated_fd_.ok() && ::fstat(rotated_fd_.get(), &st) == 0) rotated_id_ = FileId{st.st_dev, st.st_ino};
  started_ = true;
}

std::string LogFollower::read_new(std::size_t max_bytes) {
  UniqueFd fd(::open(log_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd.ok()) {
    if (errno == ENOENT) return "";
    fail("cannot open", log_, errno);
  }
  // Shared with other readers and appenders; a rotation (exclusive) is either wholly before
  // or wholly after what is read here.
  lock(fd.get(), LOCK_SH, log_);
  std::string out;
  const fs::path rotated_path = rotated_log(log_);
  // Opened, not stat'ed by name: the descriptor is what proves the next time that this .1
  // is still the same file (see rotated_fd_).
  UniqueFd old(::open(rotated_path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  std::optional<FileId> rotated;
  struct stat st {};
  struct stat old_st {};
  if (old.ok()) {
    if (::fstat(old.get(), &old_st) != 0) fail("cannot stat", rotated_path, errno);
    rotated = FileId{old_st.st_dev, old_st.st_ino};
  }

  if (!started_ || (rotated && rotated != rotated_id_)) {
    const auto old_size = static_cast<std::uint64_t>(old_st.st_size);
    // The bytes just before `at` in .1 followed by the current file's first `in_current`
    // bytes: are they the ones last read? If not, more than one rotation happened and all
    // of .1 is unread.
    auto saw_last = [&](std::uint64_t at, std::uint64_t in_current) {
      if (tail_.empty()) return true;
      const std::uint64_t from_old = tail_.size() > in_current ? tail_.size() - in_current : 0;
      if (from_old > at) return false;
      std::string seen;
      read_from(old.get(), at - from_old, from_old, seen, rotated_path);
      read_from(fd.get(), in_current - (tail_.size() - from_old), tail_.size() - from_old, seen, log_);
      return seen == tail_;
    };
    std::optional<std::uint64_t> keep_offset;
    if (old.ok()) {
      if (!started_) {
        read_from(old.get(), 0, UINT64_MAX, out, rotated_path);
      } else if (offset_ > old_size && saw_last(old_size, offset_ - old_size)) {
        // Collapsed: .1 holds only a part of what was read, the rest is still in front.
        keep_offset = offset_ - old_size;
      } else if (offset_ <= old_size && saw_last(offset_, 0)) {
        read_from(old.get(), offset_, UINT64_MAX, out, rotated_path);
      } else {
        // Either more than one rotation passed, or the one that did kept only the end of an
        // oversized log (so .1 begins at an unknown point of what was read). What was read
        // last, if .1 holds it, ends where the unread part begins; a .1 that was cut from
        // the front holds it at or before offset_. Not found: all of .1 is unread.
        std::string whole;
        read_from(old.get(), 0, UINT64_MAX, whole, rotated_path);
        std::size_t unread = 0;
        const auto end_limit = static_cast<std::size_t>(std::min<std::uint64_t>(offset_, whole.size()));
        if (!tail_.empty() && end_limit >= tail_.size()) {
          const auto found = whole.rfind(tail_, end_limit - tail_.size());
          if (found != std::string::npos) unread = found + tail_.size();
        }
        out.append(whole, unread, std::string::npos);
      }
    }
    if (keep_offset) {
      offset_ = *keep_offset;
      // Only what is still in the current file can be looked for after the next rotation.
      if (tail_.size() > offset_) tail_.erase(0, tail_.size() - offset_);
    } else {
      offset_ = 0;
      tail_.clear();
    }
    started_ = true;
  }
  if (rotated != rotated_id_) rotated_fd_ = std::move(old);
  rotated_id_ = rotated;

  if (::fstat(fd.get(), &st) != 0) fail("cannot stat", log_, errno);
  if (static_cast<std::uint64_t>(st.st_size) < offset_) {
    // Emptied by something other than a rotation: start again at its beginning.
    offset_ = 0;
    tail_.clear();
  }
  const std::size_t before = out.size();
  offset_ += read_from(fd.get(), offset_, max_bytes, out, log_);
  tail_.append(out, before, std::string::npos);
  if (tail_.size() > kTailBytes) tail_.erase(0, tail_.size() - kTailBytes);
  return out;
}

std::string read_log_with_rotated(const fs::path& log) {
  LogFollower follower(log);
  std::string all;
  for (std::string chunk = follower.read_new(); !chunk.empty(); chunk = follower.read_new()) all += chunk;
  return all;
}

std::string tail_lines(const fs::path& log, std::size_t count, std::uint64_t from) {
  std::ifstream in(log, std::ios::binary);
  std::error_code ec;
  const auto size = fs::file_size(log, ec);
  if (ec || from > size) from = 0;
  in.seekg(static_cast<std::streamoff>(from));
  std::deque<std::string> kept;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    kept.push_back(std::move(line));
    if (kept.size() > count) kept.pop_front();
  }
  std::string out;
  for (const auto& line : kept) out += (out.empty() ? "" : "\n") + line;
  return out;
}

}  // namespace qvm::store
