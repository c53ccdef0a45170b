#include "supervisor/folder_watch.hpp"

#include <sys/inotify.h>
#include <unistd.h>

namespace qvm::supervisor {
namespace asio = boost::asio;

FolderWatch::FolderWatch(asio::io_context& io, const std::filesystem::path& folder,
                         std::chrono::milliseconds interval, std::function<bool()> check)
    : interval_(interval), check_(std::move(check)), inotify_(io), timer_(io) {
  int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd >= 0) {
    // The folder, not the file: the file may not exist yet, and may be recreated.
    if (::inotify_add_watch(fd, folder.c_str(), IN_CREATE | IN_MODIFY | IN_MOVED_TO) >= 0) {
      inotify_.assign(fd);
      arm_inotify();
    } else {
      ::close(fd);
    }
  }
  arm_timer(std::chrono::milliseconds(0));
}

FolderWatch::~FolderWatch() {
  *alive_ = false;
  stop();
}

void FolderWatch::stop() {
  done_ = true;
  boost::system::error_code ignored;
  inotify_.close(ignored);
  timer_.cancel();
}

// Handlers test `alive` before touching `this`: one may run after destruction, cancelled
// or, if it had already completed, with success.
void FolderWatch::arm_inotify() {
  inotify_.async_read_some(asio::buffer(events_),
                           [this, alive = alive_](boost::system::error_code ec, std::size_t) {
                             if (ec || !*alive || done_) return;
                             run_check();
                             if (!done_) arm_inotify();
                           });
}

void FolderWatch::arm_timer(std::chrono::milliseconds after) {
  timer_.expires_after(after);
  timer_.async_wait([this, alive = alive_](boost::system::error_code ec) {
    if (ec || !*alive || done_) return;
    run_check();
    if (!done_) arm_timer(interval_);
  });
}

void FolderWatch::run_check() {
  if (check_()) stop();
}

}  // namespace qvm::supervisor
