#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>

namespace qvm::supervisor {

/// Calls `check` on `io` at once, then whenever an entry of `folder` is created, modified or moved
/// in (inotify), and at least every `interval` as a safety net (the only wake-up if inotify
/// is unavailable). Stops for good once `check` returns true. Single-threaded on `io`;
/// `check` must not destroy the watch; destroying it elsewhere cancels it.
class FolderWatch {
 public:
  FolderWatch(boost::asio::io_context& io, const std::filesystem::path& folder,
              std::chrono::milliseconds interval, std::function<bool()> check);
  ~FolderWatch();
  FolderWatch(const FolderWatch&) = delete;
  FolderWatch& operator=(const FolderWatch&) = delete;

  /// Stops watching; `check` is not called again.
  void stop();

 private:
  void arm_inotify();
  void arm_timer(std::chrono::milliseconds after);
  void run_check();

  std::chrono::milliseconds interval_;
  std::function<bool()> check_;
  boost::asio::posix::stream_descriptor inotify_;
  boost::asio::steady_timer timer_;
  char events_[4096];
  int wd_ = -1;  // the folder's watch on inotify_
  bool done_ = false;
  // False once destroyed. A wake-up that completed before cancel() still runs its handler
  // (with success), so handlers look here before they touch anything else.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace qvm::supervisor
