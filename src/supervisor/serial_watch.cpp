#include "supervisor/serial_watch.hpp"

#include <fcntl.h>
#include <sys/inotify.h>
#include <unistd.h>

namespace qvm::supervisor {
namespace asio = boost::asio;

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
    grew = true;
    std::string_view chunk(buffer, static_cast<std::size_t>(n));
    for (;;) {
      const std::size_t newline = chunk.find('\n');
      line_.append(chunk.substr(0, newline));
      if (line_.size() > kMaxLine) line_.erase(0, line_.size() - kMaxLine);
      if (newline == std::string_view::npos) break;
      if (search_line()) {
        ::close(fd);
        return;
      }
      line_.clear();
      chunk.remove_prefix(newline + 1);
    }
  }
  ::close(fd);
  if (grew && !line_.empty()) search_line();
}

bool SerialWatch::search_line() {
  std::smatch match;
  if (!std::regex_search(line_, match, pattern_)) return false;
  done_ = true;
  std::string matched = match.str();
  boost::system::error_code ignored;
  inotify_.close(ignored);
  timer_.cancel();
  on_match_(matched);
  return true;
}

}  // namespace qvm::supervisor
