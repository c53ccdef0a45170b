#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace qvm::supervisor {

/// Keeps each of `logs` (files in `folder`: serial.log and qemu.log, which QEMU writes
/// itself) under `max_size` by rotating it to one `.1` copy
/// (store::rotate_log_if_over) as soon as it reaches the cap. Wakes on inotify when a file
/// in the folder is written, at most once per `min_interval` however fast the guest writes
/// (a flood costs one check per interval, an idle VM none); without inotify, every
/// `fallback_interval`. A failed rotation (a full disk) is retried on the next write and
/// reported through `on_error` once per distinct message. Single-threaded on `io`;
/// destroying it cancels the watch.
class LogRotator {
 public:
  LogRotator(boost::asio::io_context& io, const std::filesystem::path& folder,
             std::vector<std::filesystem::path> logs, std::uint64_t max_size,
             std::function<void(const std::string&)> on_error = {},
             std::chrono::milliseconds min_interval = std::chrono::milliseconds(20),
             std::chrono::milliseconds fallback_interval = std::chrono::seconds(1));
  ~LogRotator();
  LogRotator(const LogRotator&) = delete;
  LogRotator& operator=(const LogRotator&) = delete;

  /// How many rotations it has done (for tests and the journal).
  std::uint64_t rotations() const { return rotations_; }

 private:
  void arm_inotify();
  void arm_timer(std::chrono::milliseconds after, bool then_inotify);
  void check();

  std::vector<std::filesystem::path> logs_;
  std::uint64_t max_size_;
  std::function<void(const std::string&)> on_error_;
  std::chrono::milliseconds min_interval_;
  std::chrono::milliseconds fallback_interval_;
  boost::asio::posix::stream_descriptor inotify_;
  boost::asio::steady_timer timer_;
  std::chrono::steady_clock::time_point last_check_{};
  std::string last_error_;
  std::uint64_t rotations_ = 0;
  char events_[4096];
  // False once destroyed: a completion that was already queued still runs its handler.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace qvm::supervisor
