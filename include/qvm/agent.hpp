#pragma once

#include <chrono>
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

/// The guest agent answered a command with {"error": {"class": ..., "desc": ...}}. The session
/// goes on.
class AgentError : public Error {
 public:
  AgentError(std::string command, std::string error_class, std::string desc);
  const std::string& command() const { return command_; }
  const std::string& error_class() const { return class_; }
  const std::string& desc() const { return desc_; }

 private:
  std::string command_;
  std::string class_;
  std::string desc_;
};

/// No answer in time (synchronisation or a command's reply). This is what a guest without a
/// running agent looks like: QEMU accepts connections to the agent's channel whether or not
/// anything in the guest listens. The client stays usable; its next call re-synchronises first,
/// so a late reply is never taken for the answer to a later command.
class AgentTimeout : public Error {
 public:
  using Error::Error;
};

/// The session is over or never began: the socket is missing or refuses, QEMU hung up (EOF,
/// ECONNRESET: the VM stopped), or the agent broke the protocol (malformed JSON after
/// synchronisation, a reply over 16 MiB, invalid base64). Every later call throws it too.
class AgentDisconnected : public Error {
 public:
  using Error::Error;
};

/// guest-shutdown's modes.
enum class AgentShutdownMode { powerdown, reboot, halt };

/// "powerdown", "reboot" or "halt".
std::string_view to_string(AgentShutdownMode mode);

/// How AgentClient::exec runs a command.
struct AgentExecOptions {
  /// For the whole command, from guest-exec to the last guest-exec-status.
  std::chrono::milliseconds timeout = std::chrono::seconds(60);
  /// Bytes for the command's stdin; nullopt: /dev/null.
  std::optional<std::string> input;
  /// "NAME=value" entries. Empty: the command inherits the agent's environment; otherwise it
  /// gets exactly these (qemu-ga replaces the whole environment).
  std::vector<std::string> env;
  /// Longest pause between two guest-exec-status polls (the first ones come sooner).
  std::chrono::milliseconds poll_interval = std::chrono::milliseconds(100);
};

/// What a command run by AgentClient::exec did.
struct AgentExecResult {
  /// The exit status; 128 + signal when a signal killed it (the shell's convention).
  int exit_code = 0;
  /// The signal that killed it, if one did.
  std::optional<int> signal;
  std::string out;             // stdout, decoded
  std::string err;             // stderr, decoded
  bool out_truncated = false;  // qemu-ga keeps at most 16 MiB of each stream
  bool err_truncated = false;
};

/// Blocking client for the QEMU guest agent (qemu-ga) on the Unix socket of its virtio-serial
/// channel. The agent answers one request at a time and its replies carry no ids, so the
/// client synchronises with guest-sync-delimited on connect and after any timeout, skipping
/// whatever an earlier session left in the channel. Every call takes a timeout and throws
/// AgentError, AgentTimeout or AgentDisconnected. Not thread-safe; movable.
class AgentClient {
 public:
  using OutputHandler = std::function<void(std::string_view chunk)>;

  /// Connects and synchronises, both within `connect_timeout`. Throws AgentDisconnected if the
  /// socket cannot be connected, AgentTimeout if the agent does not answer (not running, or
  /// the guest is still booting).
  AgentClient(const std::filesystem::path& socket, std::chrono::milliseconds connect_timeout);
  ~AgentClient();
  AgentClient(AgentClient&&) noexcept;
  AgentClient& operator=(AgentClient&&) noexcept;
  AgentClient(const AgentClient&) = delete;
  AgentClient& operator=(const AgentClient&) = delete;

  /// The socket this client talks to.
  const std::filesystem::path& socket() const;

  /// Synchronises again now (guest-sync-delimited with a fresh random id); the calls below do
  /// it themselves when needed.
  void sync(std::chrono::milliseconds timeout);

  /// guest-ping: returns once the agent answers.
  void ping(std::chrono::milliseconds timeout);

  /// guest-info: {"version": "7.2.0", "supported_commands": [...]}.
  nlohmann::json info(std::chrono::milliseconds timeout);

  /// Runs any agent command and returns its "return" value. `arguments` null or an empty
  /// object: no "arguments" member is sent. Not for commands that never answer on success
  /// (guest-shutdown, guest-suspend-*): those time out; use shutdown().
  nlohmann::json execute(const std::string& command,
                         const nlohmann::json& arguments = nlohmann::json::object(),
                         std::chrono::milliseconds timeout = std::chrono::seconds(10));

  /// Runs argv[0] (looked up in the guest's PATH) with argv[1..] through guest-exec with
  /// captured output, polls guest-exec-status until it exits, and returns its status and
  /// decoded output. qemu-ga hands the output over only once the command has exited; for
  /// output as it is produced, or more than ~12 MiB of it, use exec_streaming. Throws
  /// UsageError for an empty argv, AgentError if the command cannot be started (e.g. not
  /// found), AgentTimeout if it still runs after options.timeout (it keeps running: qemu-ga
  /// cannot kill it).
  AgentExecResult exec(const std::vector<std::string>& argv, const AgentExecOptions& options = {});

  /// Runs argv in the guest through /bin/sh with stdout and stderr redirected into two
  /// temporary files under /tmp (unlinked as soon as the command starts), reads them with
  /// guest-file-read while it runs and passes every chunk to on_stdout / on_stderr as it
  /// arrives (on the calling thread; either may be empty). Returns the exit status (128 +
  /// signal when a signal killed it; 127 if argv[0] is not found). Throws like exec; after a
  /// timeout the command keeps running in the guest.
  int exec_streaming(const std::vector<std::string>& argv, const OutputHandler& on_stdout,
                     const OutputHandler& on_stderr, std::chrono::milliseconds timeout);

  /// guest-shutdown with `mode`. The agent sends no reply when it starts the shutdown, so
  /// waiting `timeout` without a reply, or QEMU hanging up meanwhile, counts as accepted and
  /// returns normally (a few seconds is plenty: qemu-ga answers failures at once). Throws
  /// AgentError if the agent refuses, AgentTimeout / AgentDisconnected if it could not be
  /// asked at all (no synchronisation).
  void shutdown(AgentShutdownMode mode, std::chrono::milliseconds timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qvm
