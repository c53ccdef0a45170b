#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace qvm::testing {

/// What FakeQmpServer does when it receives an expected command: a script of steps run in
/// order (delays, messages, the reply, raw bytes, hanging up). Build it with one of the
/// factories, then chain modifiers: FakeReply::ok(value).after(50ms).preceded_by(event).
class FakeReply {
 public:
  /// {"return": value, "id": <the request's id>}.
  static FakeReply ok(nlohmann::json value = nlohmann::json::object());
  /// {"error": {"class": error_class, "desc": desc}, "id": <the request's id>}.
  static FakeReply error(std::string error_class, std::string desc);
  /// `bytes` written verbatim (add the "\n" yourself): garbage, partial lines, anything.
  static FakeReply raw(std::string bytes);
  /// Close the connection instead of replying: the client reads EOF.
  static FakeReply hang_up();
  /// Close the connection with the request still unread, which is what makes a Unix socket
  /// report ECONNRESET to its peer (SO_LINGER has no effect on AF_UNIX).
  static FakeReply reset();
  /// Swallow the command and never answer it.
  static FakeReply silence();

  /// Waits `delay` before the steps so far (other commands are served meanwhile).
  FakeReply after(std::chrono::milliseconds delay) &&;
  /// Writes `message` (e.g. FakeQmpServer::event("STOP")) before the steps so far.
  FakeReply preceded_by(nlohmann::json message) &&;
  /// Closes the connection (EOF) after the steps so far.
  FakeReply then_hang_up() &&;
  /// The reply carries this id instead of the request's.
  FakeReply with_id(nlohmann::json id) &&;
  /// The reply carries no id (what QEMU does for a request it could not parse).
  FakeReply without_id() &&;

 private:
  friend class FakeQmpServer;
  struct Step {
    enum class Kind { delay, message, reply, raw, hang_up, reset } kind;
    std::chrono::milliseconds delay{0};
    nlohmann::json message;  // message / reply (without id)
    std::string bytes;       // raw
  };
  enum class Id { echo, replace, omit };

  FakeReply() = default;
  explicit FakeReply(Step step) { steps_.push_back(std::move(step)); }

  std::vector<Step> steps_;
  Id id_ = Id::echo;
  nlohmann::json id_value_;
};

/// A fake QEMU monitor in the spirit of libvirt's tests/qemumonitortestutils.c: a real Unix
/// socket in a temporary directory, served on its own thread with its own io_context. On each
/// connection it writes its greeting, answers qmp_capabilities, then matches every command
/// against the queue of expectations in order; an unexpected command, an invalid request or an
/// expectation left over at destruction fails the current test (ADD_FAILURE). Like QEMU, it
/// serves one client at a time; the next one waits in the backlog.
///
/// All methods may be called from the test thread at any time; their effects happen on the
/// server thread in the order of the calls.
class FakeQmpServer {
 public:
  struct Options {
    /// Written on connect; nullopt: never greet.
    std::optional<nlohmann::json> greeting = default_greeting();
    /// Written on connect before the greeting (e.g. events).
    std::vector<nlohmann::json> before_greeting;
    /// Answer the first command of each connection, which must be qmp_capabilities, without
    /// consuming an expectation. false: qmp_capabilities goes through expect() like any other.
    bool negotiate = true;
    /// Write every outgoing message one byte per write, with a short pause between bytes.
    bool byte_by_byte = false;

    // Chainable setters: FakeQmpServer server(Options().without_greeting());
    Options& without_greeting() {
      greeting.reset();
      return *this;
    }
    Options& before_the_greeting(nlohmann::json message) {
      before_greeting.push_back(std::move(message));
      return *this;
    }
    Options& without_negotiation() {
      negotiate = false;
      return *this;
    }
    Options& one_byte_per_write() {
      byte_by_byte = true;
      return *this;
    }
  };

  FakeQmpServer();
  explicit FakeQmpServer(Options options);
  /// Stops the server, then fails the test if expectations were not consumed.
  ~FakeQmpServer();
  FakeQmpServer(const FakeQmpServer&) = delete;
  FakeQmpServer& operator=(const FakeQmpServer&) = delete;

  /// Where the client connects.
  const std::filesystem::path& socket_path() const;

  /// Expects `command` next (after the ones already expected) and answers with `reply`.
  void expect(std::string command, FakeReply reply = FakeReply::ok());
  /// Same, and fails the test unless the request's "arguments" equal `arguments` (a missing
  /// member compares equal to an empty object).
  void expect(std::string command, nlohmann::json arguments, FakeReply reply);

  /// Writes `message` as one line to the connected client, or to the next one right after its
  /// greeting when none is connected.
  void send(nlohmann::json message);
  /// send(event(name, data)).
  void send_event(std::string name, nlohmann::json data = nlohmann::json::object());
  /// Writes `bytes` verbatim (same delivery rule as send).
  void write_raw(std::string bytes);
  /// Closes the current connection once everything queued before is written (EOF).
  void hang_up();
  /// Stops reading now and resets the connection (SO_LINGER 0, then close) as soon as the
  /// client writes again: its request stays unread, so the client's next read fails with
  /// ECONNRESET (the only way a Unix socket produces it). Returns once reading has stopped.
  void reset();

  /// Every request received so far, in order (qmp_capabilities included).
  std::vector<nlohmann::json> received() const;
  /// Waits until `count` requests were received in total; false on timeout.
  bool wait_received(std::size_t count, std::chrono::milliseconds timeout) const;
  /// Connections accepted so far.
  int connections() const;

  /// QEMU 7.2.0's greeting, with the "oob" capability.
  static nlohmann::json default_greeting();
  /// An event message with the current time as its timestamp.
  static nlohmann::json event(std::string name, nlohmann::json data = nlohmann::json::object());

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qvm::testing
