#include "supervisor/log_rotation.hpp"

#include <sys/inotify.h>
#include <unistd.h>

#include <boost/asio/post.hpp>

#include "store/log_rotation.hpp"

namespace qvm::supervisor {
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

LogRotator::LogRotator(asio::io_context& io, const std::filesystem::path& folder,
                       std::vector<std::filesystem::path> logs, std::uint64_t max_size,
                       std::function<void(const std::string&)> on_error,
                       std::chrono::milliseconds min_interval, std::chrono::milliseconds fallback_interval)
    : logs_(std::move(logs)),
      max_size_(max_size),
      on_error_(std::move(on_error)),
      min_interval_(min_interval),
      fallback_interval_(fallback_interval),
      inotify_(io),
      timer_(io) {
  int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd >= 0) {
    // Every write QEMU makes is an IN_MODIFY; the kernel merges those that queue up while
    // this process is not reading, so a flood does not mean a wake-up per write.
    if (::inotify_add_watch(fd, folder.c_str(), IN_MODIFY) >= 0) {
      inotify_.assign(fd);
    } else {
      ::close(fd);
    }
  }
  // A log left above the cap by an earlier run is rotated at once.
  asio::post(io, [this, alive = alive_] {
    if (!*alive) return;
    check();
    if (inotify_.is_open()) {
      arm_inotify();
    } else {
      arm_timer(fallback_interval_, false);
    }
  });
}

LogRotator::~LogRotator() {
  *alive_ = false;
  boost::system::error_code ignored;
  inotify_.cancel(ignored);
  timer_.cancel();
}

void LogRotator::arm_inotify() {
  inotify_.async_read_some(asio::buffer(events_), [this, alive = alive_](boost::system::error_code ec, std::size_t) {
    if (ec || !*alive) return;
    const auto next = last_check_ + min_interval_;
    if (Clock::now() >= next) {
      check();
      return arm_inotify();
    }
    // Too soon after the last check: what the guest writes meanwhile is seen in one go.
    arm_timer(std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now()) +
                  std::chrono::milliseconds(1),
              true);
  });
}

void LogRotator::arm_timer(std::chrono::milliseconds after, bool then_inotify) {
  timer_.expires_after(after);
  timer_.async_wait([this, then_inotify, alive = alive_](boost::system::error_code ec) {
    if (ec || !*alive) return;
    check();
    if (then_inotify) return arm_inotify();
    arm_timer(fallback_interval_, false);
  });
}

void LogRotator::check() {
  last_check_ = Clock::now();
  bool failed = false;
  for (const auto& log : logs_) {
    try {
      // A reader holds a log for one read: worth a few milliseconds of the event loop.
      if (store::rotate_log_if_over(log, max_size_, std::chrono::milliseconds(10))) ++rotations_;
    } catch (const std::exception& e) {
      failed = true;
      // Reported once: the report itself is a write to this folder, which wakes this watch.
      if (e.what() != last_error_) {
        last_error_ = e.what();
        if (on_error_) on_error_(last_error_);
      }
    }
  }
  if (!failed) last_error_.clear();
}

}  // namespace qvm::supervisor
