#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "qvm/error.hpp"

namespace qvm::supervisor {

// The supervisor's control socket (<runtime dir>/control.sock, 0600) speaks JSON lines:
//   request   {"op": "down", "timeout": 60, "force": false} | {"op": "kill"} | {"op": "ping"}
//   progress  {"progress": "pressed the ACPI power button"}   (zero or more)
//   reply     {"ok": true, ...} | {"ok": false, "error": "..."}  (exactly one, then close)

/// A control request as the supervisor acts on it.
struct ControlRequest {
  std::string op;                               // "down", "kill" or "ping"
  std::optional<std::chrono::seconds> timeout;  // down: how long ACPI gets (at most ~31 years)
  bool force = false;                           // down: skip the ACPI step

  friend bool operator==(const ControlRequest&, const ControlRequest&) = default;
};

/// Checks one request line: a JSON object with a known "op", a "timeout" that is a whole
/// number of seconds (0 or more; larger than kMaxControlTimeout counts as that), and a
/// boolean "force". Returns the request, or why it is refused (for the {"ok": false} reply).
/// Never throws: the line comes from whoever can open the socket.
std::variant<ControlRequest, std::string> parse_control_request(std::string_view line);

/// The longest ACPI wait a request can ask for (about 31 years): longer is the same wait.
inline constexpr std::chrono::seconds kMaxControlTimeout{1'000'000'000};

/// One request in flight on the server side. Thread-compatible (the server's executor).
class ControlReply {
 public:
  virtual ~ControlReply() = default;
  /// Sends a progress line; ignored once finished or if the client went away.
  virtual void progress(const std::string& message) = 0;
  /// Sends the reply (must contain "ok") and closes the connection. Only the first counts.
  virtual void finish(nlohmann::json reply) = 0;
};

/// Serves the control socket on `io`. The handler runs on `io` for every request line.
class ControlServer {
 public:
  using Handler = std::function<void(const ControlRequest& request, std::shared_ptr<ControlReply>)>;

  /// Binds `socket` (replacing a stale file) with mode 0600. Throws qvm::Error.
  ControlServer(boost::asio::io_context& io, std::filesystem::path socket, Handler handler);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  /// Stops accepting and removes the socket file; open requests are left to finish.
  void close();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

/// The supervisor is not there (no socket, connection refused, or it hung up).
class SupervisorUnreachable : public Error {
 public:
  using Error::Error;
};

/// Sends one request and waits for its reply, passing progress lines to `progress`.
/// Throws SupervisorUnreachable if nobody answers or the socket's folder is not this user's
/// private one (never connecting then), qvm::Error on timeout; an {"ok": false}
/// reply is returned as is.
nlohmann::json control_request(const std::filesystem::path& socket, const nlohmann::json& request,
                               std::chrono::milliseconds timeout,
                               const std::function<void(const std::string&)>& progress = {});

}  // namespace qvm::supervisor
