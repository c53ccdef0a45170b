#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "qvm/vm.hpp"

namespace qvm::supervisor {

/// Keeps state.json catching up with the supervisor's status when the disk refuses writes
/// (full, over quota, read-only): the newest status stays in memory, and a failed save is
/// retried on the next save and on a timer with backoff until it lands. Never throws.
/// Runs on the io_context's thread only.
class StateSaver {
 public:
  /// Writes one status to state.json; throws on failure.
  using Write = std::function<void(const VmStatus&)>;
  /// Appends one QVM_* entry to the event journal (which may fail too; it must not throw).
  using Journal = std::function<void(const std::string& event, nlohmann::json data)>;

  /// `on_disk` is the state that state.json holds now (what the supervisor read at its start).
  StateSaver(boost::asio::io_context& io, Write write, Journal journal, VmState on_disk,
             std::chrono::milliseconds first_retry, std::chrono::milliseconds max_retry);
  StateSaver(const StateSaver&) = delete;
  StateSaver& operator=(const StateSaver&) = delete;

  /// Writes `status` now. On failure keeps it as the status still to write, journals the
  /// first failure of an outage, arms the retry timer and returns the error (which names the
  /// file and the OS reason); nullopt once written.
  std::optional<std::string> save(const VmStatus& status);

  /// True while the newest status has not reached state.json.
  bool pending() const { return pending_.has_value(); }
  /// True while state.json claims a VM that is starting, running, paused or stopping and
  /// the newest status is not on the disk yet: leaving it so would mislead every reader.
  bool disk_claims_active() const;
  /// The last failure's text ("" if none).
  const std::string& last_error() const { return last_error_; }

  /// Called (once per call) when a pending status has reached the disk.
  void when_caught_up(std::function<void()> done) { caught_up_ = std::move(done); }
  /// Stops retrying; what is pending stays unwritten.
  void cancel();

 private:
  bool try_write(const VmStatus& status);
  void arm_retry();

  boost::asio::steady_timer timer_;
  Write write_;
  Journal journal_;
  VmState on_disk_;
  std::chrono::milliseconds first_retry_;
  std::chrono::milliseconds max_retry_;
  std::chrono::milliseconds next_retry_;
  std::optional<VmStatus> pending_;
  std::string last_error_;
  int failures_ = 0;  // in the current outage
  bool cancelled_ = false;
  std::function<void()> caught_up_;
};

}  // namespace qvm::supervisor
