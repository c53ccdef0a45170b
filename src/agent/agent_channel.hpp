#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace qvm::agent {

/// A connected Unix stream socket with a deadline on every operation: the blocking-client
/// pattern of Asio's timeouts example (start the operation, run the io_context until the
/// deadline, cancel if it is not done). Throws AgentTimeout at a deadline (the channel stays
/// usable: a cancelled read loses nothing, a cancelled write may have sent part of its bytes)
/// and AgentDisconnected on EOF or any socket error (the channel is then closed).
class AgentChannel {
 public:
  using Clock = std::chrono::steady_clock;

  /// Connects to `socket` before `deadline`.
  AgentChannel(const std::filesystem::path& socket, Clock::time_point deadline);
  AgentChannel(const AgentChannel&) = delete;
  AgentChannel& operator=(const AgentChannel&) = delete;

  /// Writes all of `bytes`; `what` names the request in error messages.
  void write(std::string_view bytes, Clock::time_point deadline, std::string_view what);

  /// Returns the next bytes received (at least one).
  std::string read_some(Clock::time_point deadline, std::string_view what);

  bool is_open() const { return socket_.is_open(); }
  void close();

 private:
  template <typename Result>
  bool wait(const Result& result, Clock::time_point deadline);
  [[noreturn]] void fail(const boost::system::error_code& ec, std::string_view what);

  std::filesystem::path path_;
  boost::asio::io_context io_;
  boost::asio::local::stream_protocol::socket socket_;
  std::vector<char> buffer_;
};

}  // namespace qvm::agent
