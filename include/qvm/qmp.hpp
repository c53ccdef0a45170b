#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qvm/error.hpp"

namespace qvm {

/// QEMU answered a command with {"error": {"class": ..., "desc": ...}}.
class QmpError : public Error {
 public:
  QmpError(std::string command, std::string error_class, std::string desc);
  const std::string& command() const { return command_; }
  const std::string& error_class() const { return class_; }
  const std::string& desc() const { return desc_; }

 private:
  std::string command_;
  std::string class_;
  std::string desc_;
};

/// The session is over or never began: connection refused, EOF, ECONNRESET, a protocol
/// violation (malformed JSON, a line over the cap, no greeting), or close() was called.
class QmpDisconnected : public Error {
 public:
  using Error::Error;
};

/// A wait (connect, greeting, a command's reply, an event) ran past its deadline.
class QmpTimeout : public Error {
 public:
  using Error::Error;
};

/// An asynchronous event, e.g. {"event": "SHUTDOWN", "data": {...}, "timestamp": {...}}.
struct QmpEvent {
  std::string name;
  nlohmann::json data = nlohmann::json::object();
  std::int64_t seconds = 0;       // QEMU's timestamp
  std::int64_t microseconds = 0;
  nlohmann::json raw;             // the whole message as received
};

/// The greeting: {"QMP": {"version": {...}, "capabilities": [...]}}.
struct QmpGreeting {
  int major = 0;
  int minor = 0;
  int micro = 0;
  std::string package;
  std::vector<std::string> capabilities;
};

/// One message from QEMU, classified.
struct QmpMessage {
  enum class Kind { greeting, success, error, event };
  Kind kind = Kind::event;
  nlohmann::json id;        // success / error: the id echoed back (null when absent)
  nlohmann::json value;     // success: "return"; error: the "error" object; event: whole message
  QmpGreeting greeting;     // greeting only
  QmpEvent event;           // event only
};

/// Splits a QMP byte stream into lines. Pure; fuzzed.
class QmpFramer {
 public:
  /// Largest accepted line, newline excluded (query-qmp-schema is ~200 KB).
  static constexpr std::size_t kMaxLine = 16u << 20;

  /// Appends `bytes`; returns every completed line (without "\r\n" / "\n"). Throws
  /// QmpDisconnected if a line exceeds kMaxLine; the framer is then unusable.
  std::vector<std::string> feed(std::string_view bytes);

  /// Bytes of an incomplete line held so far.
  std::size_t pending() const { return partial_.size(); }

 private:
  [[noreturn]] void fail();

  std::string partial_;
  bool failed_ = false;
};

/// Parses one QMP line. Throws QmpDisconnected ("protocol error: ...") on malformed JSON or a
/// message that is none of greeting / return / error / event. Pure; fuzzed.
QmpMessage parse_qmp_message(std::string_view line);

/// Asynchronous QMP client on a Boost.Asio executor. Single-threaded: call it and run its
/// handlers on one thread (or strand). Handlers get a null exception_ptr on success, else
/// one holding QmpError, QmpDisconnected or QmpTimeout. Destroying the client cancels
/// everything: pending handlers are called with QmpDisconnected, never after destruction.
class QmpClient {
 public:
  using Clock = std::chrono::steady_clock;
  using ConnectHandler = std::function<void(std::exception_ptr, const QmpGreeting&)>;
  using ReplyHandler = std::function<void(std::exception_ptr, nlohmann::json)>;
  using EventHandler = std::function<void(const QmpEvent&)>;
  using DisconnectHandler = std::function<void(const std::string& reason)>;

  explicit QmpClient(boost::asio::any_io_executor executor);
  ~QmpClient();
  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;

  /// Connects to a Unix socket, reads the greeting and negotiates capabilities; the handler
  /// runs once the reply to qmp_capabilities arrives ("QMP ready"), or on failure, within
  /// `timeout` in total.
  void async_connect(const std::filesystem::path& socket, Clock::duration timeout,
                     ConnectHandler handler);

  /// Sends {"execute": command, "arguments": arguments, "id": <fresh>}; the handler gets the
  /// "return" value. `arguments` null or an empty object: no "arguments" member is sent.
  /// An error reply without id (QEMU could not parse a request) fails the oldest pending command.
  void async_execute(std::string command, nlohmann::json arguments, Clock::duration timeout,
                     ReplyHandler handler);

  /// Calls `handler` for every event received from now on, including events that arrive
  /// during the handshake or between a command and its reply. Returns an id for unsubscribe.
  int subscribe(EventHandler handler);
  void unsubscribe(int subscription);

  /// Called once when the session ends for any reason other than close().
  void on_disconnect(DisconnectHandler handler);

  /// Ends the session; pending commands fail with QmpDisconnected. Idempotent.
  void close();

  /// True between a successful handshake and the end of the session.
  bool connected() const;

  /// The greeting of the current session (empty before connecting).
  const QmpGreeting& greeting() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

/// Blocking facade over QmpClient with its own io_context, for the CLI and tests.
/// Not thread-safe. Events are queued and can be waited for.
class QmpSession {
 public:
  using Clock = std::chrono::steady_clock;

  /// Connects and completes the handshake; throws QmpDisconnected / QmpTimeout.
  QmpSession(const std::filesystem::path& socket, Clock::duration timeout);
  ~QmpSession();
  QmpSession(const QmpSession&) = delete;
  QmpSession& operator=(const QmpSession&) = delete;

  /// Runs a command and returns its "return" value; throws QmpError with class and desc on
  /// an error reply, QmpDisconnected / QmpTimeout otherwise.
  nlohmann::json execute(const std::string& command,
                         const nlohmann::json& arguments = nlohmann::json::object(),
                         Clock::duration timeout = std::chrono::seconds(30));

  /// Returns the first queued or incoming event named `name` (earlier events of other
  /// names stay queued), or nullopt after `timeout`. Throws QmpDisconnected if the session
  /// ends first and no such event was queued.
  std::optional<QmpEvent> wait_event(std::string_view name, Clock::duration timeout);

  /// Takes every event received so far.
  std::vector<QmpEvent> take_events();

  const QmpGreeting& greeting() const;

  /// Waits until the peer closes the connection (QEMU exiting); true if it did in time.
  bool wait_closed(Clock::duration timeout);

 private:
  boost::asio::io_context io_;
  std::unique_ptr<QmpClient> client_;
  std::deque<QmpEvent> events_;
  std::optional<std::string> disconnect_reason_;
};

}  // namespace qvm
