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
    wd_ = ::inotify_add_watch(fd, folder.c_str(), IN_CREATE | IN_MODIFY | IN_MOVED_TO);
    if (wd_ >= 0) {
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

// Stopping removes the watch but keeps the descriptor until destruction. Closing an
// inotify descriptor waits for the kernel to finish destroying its watches (an SRCU grace
// period, several milliseconds); by the time the watch is destroyed that has long
// happened in the background, whereas closing here would hold up whoever stopped it: the
// QMP connect of a start, the "ready" of a serial match.
void FolderWatch::stop() {
  done_ = true;
  boost::system::error_code ignored;
  if (inotify_.is_open()) {
    if (wd_ >= 0) ::inotify_rm_watch(inotify_.native_handle(), wd_);
    wd_ = -1;
    inotify_.cancel(ignored);
  }
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
