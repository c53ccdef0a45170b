#include "supervisor/serial_watch.hpp"

#include <fcntl.h>
#include <sys/inotify.h>
#include <unistd.h>

namespace qvm::supervisor {
namespace asio = boost::asio;
namespace {
// A pattern is meant to match a line or two; a bounded window keeps each search cheap.
constexpr std::size_t kWindow = 64 * 1024;
}  // namespace

SerialWatch::SerialWatch(asio::io_context& io, std::filesystem::path file, std::uint64_t offset,
                         std::regex pattern, std::function<void(const std::string&)> on_match)
    : file_(std::move(file)),
      offset_(offset),
      pattern_(std::move(pattern)),
      on_match_(std::move(on_match)),
      inotify_(io),
      timer_(io) {
  int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd >= 0) {
    // Watch the folder: the log may not exist yet, and QEMU may recreate it.
    if (::inotify_add_watch(fd, file_.parent_path().c_str(), IN_MODIFY | IN_CREATE) >= 0) {
      inotify_.assign(fd);
      arm_inotify();
    } else {
      ::close(fd);
    }
  }
  // The first look happens at once; later ones on inotify wake-ups or every 250 ms.
  timer_.expires_after(std::chrono::milliseconds(0));
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || done_) return;
    check();
    if (!done_) arm_timer();
  });
}

SerialWatch::~SerialWatch() {
  done_ = true;
  boost::system::error_code ignored;
  inotify_.close(ignored);
  timer_.cancel();
}

void SerialWatch::arm_inotify() {
  inotify_.async_read_some(asio::buffer(events_), [this](boost::system::error_code ec, std::size_t) {
    if (ec || done_) return;
    check();
    if (!done_) arm_inotify();
  });
}

void SerialWatch::arm_timer() {
  timer_.expires_after(std::chrono::milliseconds(250));
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || done_) return;
    check();
    if (!done_) arm_timer();
  });
}

void SerialWatch::check() {
  if (done_) return;
  int fd = ::open(file_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buffer[65536];
  bool grew = false;
  for (;;) {
    ssize_t n = ::pread(fd, buffer, sizeof buffer, static_cast<off_t>(offset_));
    if (n <= 0) break;
    offset_ += static_cast<std::uint64_t>(n);
    window_.append(buffer, static_cast<std::size_t>(n));
    grew = true;
  }
  ::close(fd);
  if (!grew) return;
  if (window_.size() > kWindow) window_.erase(0, window_.size() - kWindow);
  std::smatch match;
  if (std::regex_search(window_, match, pattern_)) {
    done_ = true;
    std::string matched = match.str();
    boost::system::error_code ignored;
    inotify_.close(ignored);
    timer_.cancel();
    on_match_(matched);
  }
}

}  // namespace qvm::supervisor
