#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "supervisor/detached_work.hpp"
#include "supervisor/serial_watch.hpp"

namespace qvm::supervisor {

/// What a VM must show, beyond QMP answering, before `qvm up` calls it ready (profile [ready]).
struct ReadyConditions {
  std::optional<std::string> serial;  // an ECMAScript regex on the serial console
  bool agent = false;                 // the guest agent answers guest-ping
  std::chrono::seconds timeout{300};
  std::filesystem::path serial_log;
  std::uint64_t serial_offset = 0;  // where this run's serial output begins
  std::filesystem::path agent_socket;
};

/// What Readiness reports, each on the io_context's thread.
struct ReadyCallbacks {
  std::function<void(const std::string& matched)> serial_matched;  // journal QVM_READY_SERIAL
  std::function<void()> agent_answered;                            // journal QVM_READY_AGENT
  std::function<void(const std::string& how)> ready;               // every condition met
  std::function<void(const std::string& missing)> timed_out;       // some were not, in time
};

/// Waits for the [ready] conditions of one run, without ever blocking the loop: the serial
/// console through SerialWatch, the guest agent through pings on a detached thread (the agent
/// client is blocking) whose answer is posted back; either way `ready` or `timed_out` is called
/// once. Destroying it cancels every wait, and no callback runs after that. Runs on `io`.
class Readiness {
 public:
  /// Starts waiting; `conditions` must ask for the serial console or the agent (or both).
  /// Throws std::regex_error for an invalid pattern (the profile parser has checked it).
  Readiness(boost::asio::io_context& io, ReadyConditions conditions, ReadyCallbacks callbacks);
  ~Readiness();
  Readiness(const Readiness&) = delete;
  Readiness& operator=(const Readiness&) = delete;

  /// What is being waited for, for `qvm up`: "the serial console to match /login:/".
  const std::string& what() const { return what_; }

 private:
  void check_done(const std::string& how);

  ReadyConditions conditions_;
  ReadyCallbacks callbacks_;
  std::string what_;
  bool waiting_serial_ = false;
  bool waiting_agent_ = false;
  bool over_ = false;
  boost::asio::steady_timer timer_;
  DetachedWork agent_work_;
  std::unique_ptr<SerialWatch> serial_watch_;
};

}  // namespace qvm::supervisor
