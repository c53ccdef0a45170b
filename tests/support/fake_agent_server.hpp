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

/// What FakeAgentServer does when it receives an expected command: a script of steps run in
/// order. Chain modifiers: FakeAgentReply::ok(value).after(50ms).preceded_by_raw("junk\n").
class FakeAgentReply {
 public:
  /// {"return": value}.
  static FakeAgentReply ok(nlohmann::json value = nlohmann::json::object());
  /// {"error": {"class": error_class, "desc": desc}}.
  static FakeAgentReply error(std::string error_class, std::string desc);
  /// `bytes` written verbatim (add the "\n" yourself).
  static FakeAgentReply raw(std::string bytes);
  /// Close the connection instead of replying: the client reads EOF.
  static FakeAgentReply hang_up();
  /// No reply at all (what qemu-ga does when guest-shutdown succeeds).
  static FakeAgentReply silence();

  /// Waits `delay` before the steps so far. Like qemu-ga, the fake handles one request at a
  /// time: later requests wait too.
  FakeAgentReply after(std::chrono::milliseconds delay) &&;
  /// Writes `bytes` before the steps so far.
  FakeAgentReply preceded_by_raw(std::string bytes) &&;
  /// Closes the connection (EOF) after the steps so far.
  FakeAgentReply then_hang_up() &&;

 private:
  friend class FakeAgentServer;
  struct Step {
    enum class Kind { delay, bytes, hang_up } kind;
    std::chrono::milliseconds delay{0};
    std::string bytes;
  };

  FakeAgentReply() = default;
  explicit FakeAgentReply(Step step) { steps_.push_back(std::move(step)); }

  std::vector<Step> steps_;
};

/// A command the fake guest runs when guest-exec asks for it, with the exit status and output
/// it produces. Started directly (guest-exec path + arg == argv, output captured and returned
/// base64-encoded by guest-exec-status), or the way AgentClient::exec_streaming starts it
/// (/bin/sh -c "exec >OUT 2>ERR ...; rm -f -- OUT ERR; exec ARGV...", with ARGV == argv once
/// unquoted): then output goes into the fake guest's files OUT and ERR as it is produced.
struct FakeProcess {
  std::vector<std::string> argv;
  std::string out, err;            // produced as soon as it starts
  std::string late_out, late_err;  // produced when it exits
  int exit_code = 0;
  std::optional<int> signal;         // killed by this signal instead
  int running_polls = 0;             // guest-exec-status says "running" this many times
  bool until_released = false;       // ... and then until FakeAgentServer::release()
  std::optional<std::string> input;  // the decoded input-data it must be given
};

/// A fake qemu-ga on a real Unix socket in a temporary directory, served on its own thread.
/// Like the real agent (and unlike QMP) it greets nobody, puts no ids in replies, handles one
/// request at a time, answers a stray 0xFF byte with a JSON parse error and
/// guest-sync-delimited with 0xFF + {"return": id}. Other commands must match the queue of
/// expectations in order (an unexpected command, an invalid request or an expectation left at
/// destruction fails the current test), except that guest-exec-status of the processes
/// started through expect_process and guest-file-open / -read / -close are served by a small
/// model of the guest. One client at a time; the guest's state (files, processes) outlives
/// connections.
///
/// All methods may be called from any thread at any time, including from an AgentClient
/// callback on the test thread.
class FakeAgentServer {
 public:
  struct Options {
    /// Written to every connection as soon as it is accepted: leftovers of earlier sessions.
    std::string stale;
    /// false: an agent that is not running (QEMU still accepts the connection): every byte is
    /// read, nothing is ever answered.
    bool answering = true;

    Options& with_stale(std::string bytes) {
      stale = std::move(bytes);
      return *this;
    }
    Options& not_answering() {
      answering = false;
      return *this;
    }
  };

  FakeAgentServer();
  explicit FakeAgentServer(Options options);
  /// Stops the server, then fails the test if expectations were not consumed.
  ~FakeAgentServer();
  FakeAgentServer(const FakeAgentServer&) = delete;
  FakeAgentServer& operator=(const FakeAgentServer&) = delete;

  /// Where the client connects.
  const std::filesystem::path& socket_path() const;

  /// Expects `command` next (after the ones already expected) and answers with `reply`.
  void expect(std::string command, FakeAgentReply reply = FakeAgentReply::ok());
  /// Same, and fails the test unless the request's "arguments" equal `arguments` (a missing
  /// member compares equal to an empty object).
  void expect(std::string command, nlohmann::json arguments, FakeAgentReply reply);
  /// Expects guest-exec of `process` next; answers {"pid": N} and runs it.
  void expect_process(FakeProcess process);
  /// Lets every until_released process exit (at its next status poll).
  void release();

  /// Writes `bytes` to the connected client now.
  void write_raw(std::string bytes);
  /// Closes the current connection now (EOF).
  void hang_up();

  /// Every request received so far, in order (guest-sync-delimited included).
  std::vector<nlohmann::json> received() const;
  /// Their "execute" names.
  std::vector<std::string> commands() const;
  /// How many times `command` was received.
  int count(const std::string& command) const;
  /// Connections accepted so far.
  int connections() const;
  /// Paths of the files that exist in the fake guest.
  std::vector<std::string> files() const;
  /// guest-file handles still open.
  std::size_t open_handles() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qvm::testing
