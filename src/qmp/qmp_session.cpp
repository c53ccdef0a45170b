#include <algorithm>

#include "qmp/qmp_text.hpp"
#include "qvm/qmp.hpp"

namespace qvm {
namespace {

using Clock = QmpSession::Clock;

// The client's own timers end every wait; the loop's deadline only guards against a bug there.
constexpr Clock::duration kGrace = std::chrono::seconds(2);

Clock::time_point deadline_after(Clock::duration timeout) {
  const Clock::time_point now = Clock::now();
  if (timeout > Clock::time_point::max() - now) return Clock::time_point::max();
  return now + timeout;
}

// Runs `io` until `done()` or `deadline`; false if it did not get done. Returns early when no
// work is left (nothing could make `done()` true any more).
template <typename Done>
bool run_until(boost::asio::io_context& io, Done done, Clock::time_point deadline) {
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    if (io.stopped()) io.restart();
    if (io.run_one_until(deadline) == 0 && io.stopped()) {
      io.restart();
      if (io.poll() == 0) return done();
    }
  }
  return true;
}

}  // namespace

QmpSession::QmpSession(const std::filesystem::path& socket, Clock::duration timeout)
    : client_(std::make_unique<QmpClient>(io_.get_executor())) {
  client_->subscribe([this](const QmpEvent& event) { events_.push_back(event); });
  client_->on_disconnect([this](const std::string& reason) { disconnect_reason_ = reason; });

  // Shared with the handler so that it never writes into this frame after it is gone.
  auto result = std::make_shared<std::optional<std::exception_ptr>>();
  client_->async_connect(
      socket, timeout, [result](std::exception_ptr error, const QmpGreeting&) { *result = error; });
  if (!run_until(
          io_, [&] { return result->has_value(); }, deadline_after(timeout + kGrace))) {
    throw QmpTimeout("no QMP handshake with " + socket.string() + " within " +
                     qmp::format_duration(timeout));
  }
  if (**result) std::rethrow_exception(**result);
}

QmpSession::~QmpSession() {
  // Before the queues it feeds are destroyed; the io_context then destroys what is still queued.
  client_.reset();
}

nlohmann::json QmpSession::execute(const std::string& command, const nlohmann::json& arguments,
                                   Clock::duration timeout) {
  struct Result {
    bool done = false;
    std::exception_ptr error;
    nlohmann::json value;
  };
  auto result = std::make_shared<Result>();
  client_->async_execute(command, arguments, timeout,
                         [result](std::exception_ptr error, nlohmann::json value) {
                           result->done = true;
                           result->error = error;
                           result->value = std::move(value);
                         });
  if (!run_until(
          io_, [&] { return result->done; }, deadline_after(timeout + kGrace))) {
    throw QmpTimeout("QMP command \"" + command + "\" got no reply within " +
                     qmp::format_duration(timeout));
  }
  if (result->error) std::rethrow_exception(result->error);
  return std::move(result->value);
}

std::optional<QmpEvent> QmpSession::wait_event(std::string_view name, Clock::duration timeout) {
  // Earlier events of other names stay queued; only the first `name` is taken.
  std::size_t scanned = 0;
  auto found = events_.end();
  const auto find = [&] {
    for (; scanned < events_.size(); ++scanned) {
      if (events_[scanned].name == name) {
        found = events_.begin() + static_cast<std::ptrdiff_t>(scanned);
        return true;
      }
    }
    return false;
  };
  // Let what already arrived be dispatched before deciding anything.
  if (io_.stopped()) io_.restart();
  io_.poll();
  run_until(
      io_, [&] { return find() || disconnect_reason_.has_value(); }, deadline_after(timeout));
  if (find()) {
    QmpEvent event = std::move(*found);
    events_.erase(found);
    return event;
  }
  if (disconnect_reason_) {
    throw QmpDisconnected("the QMP session ended before event " + std::string(name) +
                          " arrived: " + *disconnect_reason_);
  }
  return std::nullopt;
}

std::vector<QmpEvent> QmpSession::take_events() {
  if (io_.stopped()) io_.restart();
  io_.poll();
  std::vector<QmpEvent> taken(std::make_move_iterator(events_.begin()),
                              std::make_move_iterator(events_.end()));
  events_.clear();
  return taken;
}

const QmpGreeting& QmpSession::greeting() const {
  return client_->greeting();
}

bool QmpSession::wait_closed(Clock::duration timeout) {
  run_until(
      io_, [&] { return disconnect_reason_.has_value(); }, deadline_after(timeout));
  return disconnect_reason_.has_value();
}

}  // namespace qvm
