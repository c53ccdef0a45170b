#include "agent/agent_channel.hpp"

#include <boost/asio/write.hpp>
#include <optional>

#include "qvm/agent.hpp"

namespace qvm::agent {
namespace {

namespace asio = boost::asio;
using Endpoint = asio::local::stream_protocol::endpoint;

constexpr std::size_t kReadChunk = 64 * 1024;

}  // namespace

AgentChannel::AgentChannel(const std::filesystem::path& socket, Clock::time_point deadline)
    : path_(socket), socket_(io_), buffer_(kReadChunk) {
  Endpoint endpoint;
  try {
    endpoint = Endpoint(socket.string());
  } catch (const boost::system::system_error& e) {
    // Longer than sun_path (108 bytes).
    throw AgentDisconnected("cannot connect to the guest agent socket " + socket.string() + ": " +
                            e.code().message());
  }
  std::optional<boost::system::error_code> result;
  socket_.async_connect(endpoint, [&](const boost::system::error_code& ec) { result = ec; });
  if (!wait(result, deadline)) {
    close();
    throw AgentTimeout("cannot connect to the guest agent socket " + socket.string() + " in time");
  }
  if (*result) {
    close();
    throw AgentDisconnected("cannot connect to the guest agent socket " + socket.string() + ": " +
                            result->message());
  }
}

// Runs the one outstanding operation to completion or until the deadline, then cancels it and
// lets its handler run, so that nothing refers to the caller's frame afterwards. True if it
// completed by itself (also when it did so in the race with the cancellation).
template <typename Result>
bool AgentChannel::wait(const Result& result, Clock::time_point deadline) {
  io_.restart();
  io_.run_until(deadline);
  if (!result) {
    boost::system::error_code ignored;
    socket_.cancel(ignored);
    io_.restart();
    io_.run();
  }
  return result && *result != asio::error::operation_aborted;
}

void AgentChannel::fail(const boost::system::error_code& ec, std::string_view what) {
  close();
  if (ec == asio::error::eof) {
    throw AgentDisconnected("the guest agent connection " + path_.string() + " was closed (" +
                            std::string(what) + "): QEMU hung up");
  }
  throw AgentDisconnected("the guest agent connection " + path_.string() + " failed (" +
                          std::string(what) + "): " + ec.message());
}

void AgentChannel::write(std::string_view bytes, Clock::time_point deadline,
                         std::string_view what) {
  if (!is_open()) throw AgentDisconnected("the guest agent connection is closed");
  std::optional<boost::system::error_code> result;
  asio::async_write(socket_, asio::buffer(bytes.data(), bytes.size()),
                    [&](const boost::system::error_code& ec, std::size_t) { result = ec; });
  if (!wait(result, deadline)) {
    throw AgentTimeout("could not send " + std::string(what) + " to the guest agent in time");
  }
  if (*result) fail(*result, what);
}

std::string AgentChannel::read_some(Clock::time_point deadline, std::string_view what) {
  if (!is_open()) throw AgentDisconnected("the guest agent connection is closed");
  std::optional<boost::system::error_code> result;
  std::size_t size = 0;
  socket_.async_read_some(asio::buffer(buffer_),
                          [&](const boost::system::error_code& ec, std::size_t n) {
                            result = ec;
                            size = n;
                          });
  if (!wait(result, deadline)) {
    throw AgentTimeout("no answer from the guest agent (" + std::string(what) + ") in time");
  }
  if (*result) fail(*result, what);
  return std::string(buffer_.data(), size);
}

void AgentChannel::close() {
  boost::system::error_code ignored;
  socket_.close(ignored);
}

}  // namespace qvm::agent
