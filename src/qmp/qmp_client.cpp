#include <algorithm>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <map>
#include <optional>
#include <utility>

#include "qmp/qmp_text.hpp"
#include "qvm/qmp.hpp"

namespace qvm {
namespace {

namespace asio = boost::asio;
using Socket = asio::local::stream_protocol::socket;
using Endpoint = asio::local::stream_protocol::endpoint;
using nlohmann::json;

constexpr std::size_t kReadChunk = 64 * 1024;

}  // namespace

// Lifetime: every asynchronous operation holds a shared_ptr to the Impl, so its buffers,
// socket and timers outlive the QmpClient until the operation completes (aborted, after
// close()). User handlers are called either from an I/O completion (replies, events, a
// successful handshake, timeouts) or through `deferred_` (failures caused by close(), by the
// end of the session, or by calling into a closed client), which the destructor drains so that
// no user handler ever runs after ~QmpClient returns.
struct QmpClient::Impl : std::enable_shared_from_this<Impl> {
  enum class State { idle, connecting, greeting, negotiating, ready, closed };

  struct Pending {
    std::string command;
    ReplyHandler handler;  // empty for qmp_capabilities, which completes the connect
    Clock::time_point deadline = Clock::time_point::max();
    Clock::duration timeout{};
  };

  explicit Impl(asio::any_io_executor executor)
      : executor_(executor), socket_(executor), connect_timer_(executor), command_timer_(executor) {}

  void connect(const std::filesystem::path& path, Clock::duration timeout, ConnectHandler handler);
  void execute(std::string command, json arguments, Clock::duration timeout, ReplyHandler handler);
  void end(const std::string& reason, std::exception_ptr connect_error, bool notify);
  void drain();

  void defer(std::function<void()> call);
  void on_connected(const boost::system::error_code& ec);
  void on_connect_deadline();
  void read();
  void on_read(const boost::system::error_code& ec, std::size_t size);
  void handle_line(const std::string& line);
  void on_greeting(QmpGreeting greeting);
  void on_reply(QmpMessage& message);
  void arm_command_timer(Clock::time_point deadline);
  void on_command_timer(Clock::time_point armed_for);
  void dispatch(const QmpEvent& event);
  void send(const json& request);
  void write_next();
  std::string connect_failure(const std::string& reason) const;

  asio::any_io_executor executor_;
  Socket socket_;
  asio::steady_timer connect_timer_;
  // One timer for every command's deadline, armed at the earliest one: a command that is
  // answered in time leaves it alone, so a round trip costs no timer system call.
  asio::steady_timer command_timer_;
  std::optional<Clock::time_point> command_timer_armed_;  // when the pending wait fires
  State state_ = State::idle;
  std::filesystem::path path_;
  Clock::duration connect_timeout_{};
  ConnectHandler connect_handler_;
  QmpGreeting greeting_;
  QmpFramer framer_;
  std::vector<char> read_buffer_ = std::vector<char>(kReadChunk);
  std::deque<std::string> write_queue_;
  bool writing_ = false;
  std::uint64_t next_id_ = 1;
  std::map<std::uint64_t, Pending> pending_;  // by id; the first one is the oldest
  std::map<int, std::shared_ptr<EventHandler>> subscribers_;
  int next_subscription_ = 1;
  DisconnectHandler disconnect_handler_;
  std::string end_reason_;
  std::deque<std::function<void()>> deferred_;
  bool drain_posted_ = false;
};

void QmpClient::Impl::defer(std::function<void()> call) {
  deferred_.push_back(std::move(call));
  if (drain_posted_) return;
  drain_posted_ = true;
  asio::post(executor_, [self = shared_from_this()] { self->drain(); });
}

void QmpClient::Impl::drain() {
  drain_posted_ = false;
  while (!deferred_.empty()) {
    auto call = std::move(deferred_.front());
    deferred_.pop_front();
    call();
  }
}

std::string QmpClient::Impl::connect_failure(const std::string& reason) const {
  return "QMP handshake with " + path_.string() + " failed: " + reason;
}

void QmpClient::Impl::connect(const std::filesystem::path& path, Clock::duration timeout,
                              ConnectHandler handler) {
  if (state_ != State::idle) {
    const std::string why = state_ == State::closed
                                ? "this QmpClient's session is over; create a new client"
                                : "this QmpClient is already connected or connecting";
    defer([handler = std::move(handler), why] {
      handler(std::make_exception_ptr(QmpDisconnected("cannot connect to QMP: " + why)), {});
    });
    return;
  }
  path_ = path;
  connect_timeout_ = timeout;
  connect_handler_ = std::move(handler);
  state_ = State::connecting;

  Endpoint endpoint;
  try {
    endpoint = Endpoint(path.string());
  } catch (const boost::system::system_error& e) {
    // Longer than sun_path (108 bytes).
    const std::string reason =
        "cannot connect to QMP socket " + path_.string() + ": " + e.code().message();
    end(reason, std::make_exception_ptr(QmpDisconnected(reason)), false);
    return;
  }
  connect_timer_.expires_after(timeout);
  connect_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec) self->on_connect_deadline();
  });
  socket_.async_connect(endpoint, [self = shared_from_this()](const boost::system::error_code& ec) {
    self->on_connected(ec);
  });
}

void QmpClient::Impl::on_connected(const boost::system::error_code& ec) {
  if (state_ != State::connecting) return;  // closed or timed out meanwhile
  if (ec) {
    const std::string reason =
        "cannot connect to QMP socket " + path_.string() + ": " + ec.message();
    end(reason, std::make_exception_ptr(QmpDisconnected(reason)), false);
    return;
  }
  state_ = State::greeting;
  // Requests are written straight from send(); a full socket buffer must not block the loop.
  boost::system::error_code ignored;
  socket_.non_blocking(true, ignored);
  read();
}

void QmpClient::Impl::on_connect_deadline() {
  const std::string limit = qmp::format_duration(connect_timeout_);
  std::string reason;
  switch (state_) {
    case State::connecting:
      reason = "cannot connect to QMP socket " + path_.string() + " within " + limit;
      break;
    case State::greeting:
      // A QEMU monitor socket serves one client at a time; the next one waits in the backlog.
      reason = "no QMP greeting from " + path_.string() + " within " + limit +
               " (is another client connected to this monitor?)";
      break;
    case State::negotiating:
      reason = "no reply to qmp_capabilities from " + path_.string() + " within " + limit;
      break;
    default:
      return;
  }
  end(reason, std::make_exception_ptr(QmpTimeout(reason)), false);
}

void QmpClient::Impl::read() {
  socket_.async_read_some(
      asio::buffer(read_buffer_),
      [self = shared_from_this()](const boost::system::error_code& ec, std::size_t size) {
        self->on_read(ec, size);
      });
}

void QmpClient::Impl::on_read(const boost::system::error_code& ec, std::size_t size) {
  if (state_ == State::closed) return;
  if (ec == asio::error::eof) {
    end("QEMU closed the QMP connection", nullptr, true);
    return;
  }
  if (ec) {
    end("QMP connection to " + path_.string() + " failed: " + ec.message(), nullptr, true);
    return;
  }
  std::vector<std::string> lines;
  try {
    lines = framer_.feed(std::string_view(read_buffer_.data(), size));
  } catch (const QmpDisconnected& e) {
    end(e.what(), nullptr, true);
    return;
  }
  for (const std::string& line : lines) {
    handle_line(line);
    // A handler may have closed or destroyed the client: the rest of the chunk is dropped.
    if (state_ == State::closed) return;
  }
  read();
}

void QmpClient::Impl::handle_line(const std::string& line) {
  QmpMessage message;
  try {
    message = parse_qmp_message(line);
  } catch (const QmpDisconnected& e) {
    end(e.what(), nullptr, true);
    return;
  }
  switch (message.kind) {
    case QmpMessage::Kind::event:
      dispatch(message.event);
      return;
    case QmpMessage::Kind::greeting:
      // QEMU greets once per connection; a second greeting carries nothing we need.
      if (state_ == State::greeting) on_greeting(std::move(message.greeting));
      return;
    case QmpMessage::Kind::success:
    case QmpMessage::Kind::error:
      if (state_ == State::greeting) {
        end("protocol error: expected the QMP greeting, got: " + qmp::excerpt(line), nullptr, true);
        return;
      }
      on_reply(message);
      return;
  }
}

void QmpClient::Impl::on_greeting(QmpGreeting greeting) {
  greeting_ = std::move(greeting);
  state_ = State::negotiating;
  const std::uint64_t id = next_id_++;
  pending_.emplace(id, Pending{"qmp_capabilities", nullptr});
  send({{"execute", "qmp_capabilities"}, {"id", id}});
}

void QmpClient::Impl::on_reply(QmpMessage& message) {
  auto it = pending_.end();
  if (message.id.is_number_unsigned()) {
    it = pending_.find(message.id.get<std::uint64_t>());
  } else if (message.id.is_null() && message.kind == QmpMessage::Kind::error) {
    // QEMU answers a request it could not parse (so could not read its id) with an error
    // without id. Requests are answered in order on a monitor without out-of-band execution,
    // so it belongs to the oldest pending command.
    it = pending_.begin();
  }
  // Unknown ids (a late reply to a timed-out command, or not ours at all) are ignored, and so
  // is a success without id: we never send a command without one.
  if (it == pending_.end()) return;

  Pending pending = std::move(it->second);
  pending_.erase(it);

  if (!pending.handler) {  // qmp_capabilities: the end of the handshake
    if (message.kind == QmpMessage::Kind::error) {
      const std::string reason = connect_failure(
          "qmp_capabilities was refused: " + message.value["class"].get<std::string>() + ": " +
          message.value["desc"].get<std::string>());
      end(reason, std::make_exception_ptr(QmpDisconnected(reason)), false);
      return;
    }
    state_ = State::ready;
    connect_timer_.cancel();
    auto handler = std::move(connect_handler_);
    connect_handler_ = nullptr;
    handler(nullptr, greeting_);
    return;
  }
  if (message.kind == QmpMessage::Kind::error) {
    pending.handler(
        std::make_exception_ptr(QmpError(pending.command, message.value["class"].get<std::string>(),
                                         message.value["desc"].get<std::string>())),
        nullptr);
  } else {
    pending.handler(nullptr, std::move(message.value));
  }
}

void QmpClient::Impl::execute(std::string command, json arguments, Clock::duration timeout,
                              ReplyHandler handler) {
  if (state_ != State::ready) {
    const std::string why = state_ == State::closed ? end_reason_ : "the QMP session is not ready";
    auto error = std::make_exception_ptr(
        QmpDisconnected("QMP command \"" + command + "\" was not sent: " + why));
    defer([handler = std::move(handler), error] { handler(error, nullptr); });
    return;
  }
  const std::uint64_t id = next_id_++;
  json request = {{"execute", command}};
  if (!arguments.is_null() && !(arguments.is_object() && arguments.empty())) {
    request["arguments"] = std::move(arguments);
  }
  request["id"] = id;

  const Clock::time_point now = Clock::now();
  const Clock::time_point deadline =
      timeout < Clock::time_point::max() - now ? now + timeout : Clock::time_point::max();
  pending_.emplace(id, Pending{std::move(command), std::move(handler), deadline, timeout});
  arm_command_timer(deadline);
  send(request);
}

void QmpClient::Impl::arm_command_timer(Clock::time_point deadline) {
  if (deadline == Clock::time_point::max()) return;
  if (command_timer_armed_ && *command_timer_armed_ <= deadline) return;
  command_timer_armed_ = deadline;
  command_timer_.expires_at(deadline);  // an earlier wait ends with operation_aborted
  command_timer_.async_wait([self = shared_from_this(), deadline](const boost::system::error_code& ec) {
    if (!ec) self->on_command_timer(deadline);
  });
}

void QmpClient::Impl::on_command_timer(Clock::time_point armed_for) {
  if (state_ == State::closed) return;
  if (command_timer_armed_ == armed_for) command_timer_armed_.reset();
  const Clock::time_point now = Clock::now();
  std::vector<std::uint64_t> expired;
  for (const auto& [id, pending] : pending_) {
    if (pending.deadline <= now) expired.push_back(id);
  }
  for (const std::uint64_t id : expired) {
    // A handler may have closed the client, or been answered meanwhile: look each one up again.
    if (state_ == State::closed) return;
    const auto it = pending_.find(id);
    if (it == pending_.end()) continue;
    Pending pending = std::move(it->second);
    pending_.erase(it);
    // The id stays unknown from now on, so a late reply is ignored and the session goes on.
    pending.handler(std::make_exception_ptr(QmpTimeout("QMP command \"" + pending.command +
                                                       "\" got no reply within " +
                                                       qmp::format_duration(pending.timeout))),
                    nullptr);
  }
  if (state_ == State::closed) return;
  const auto earliest = std::min_element(pending_.begin(), pending_.end(), [](const auto& a, const auto& b) {
    return a.second.deadline < b.second.deadline;
  });
  if (earliest != pending_.end()) arm_command_timer(earliest->second.deadline);
}

void QmpClient::Impl::dispatch(const QmpEvent& event) {
  // Handlers may subscribe or unsubscribe: iterate over a snapshot, skip the removed ones,
  // and let new ones start with the next event.
  const std::vector<std::pair<int, std::shared_ptr<EventHandler>>> snapshot(subscribers_.begin(),
                                                                            subscribers_.end());
  for (const auto& [subscription, handler] : snapshot) {
    if (subscribers_.count(subscription) != 0) (*handler)(event);
  }
}

void QmpClient::Impl::send(const json& request) {
  // Replace rather than throw on invalid UTF-8 in a caller's string; QEMU would refuse it.
  std::string text = request.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  if (!writing_ && state_ != State::closed) {
    // Usually the whole request fits in the socket buffer at once: no completion to wait for.
    // Anything else (a partial write, would-block, an error) goes the asynchronous way,
    // which also reports errors.
    boost::system::error_code ec;
    const std::size_t sent = socket_.write_some(asio::buffer(text), ec);
    if (!ec && sent == text.size()) return;
    if (!ec) text.erase(0, sent);
  }
  write_queue_.push_back(std::move(text));
  if (!writing_) write_next();
}

void QmpClient::Impl::write_next() {
  if (write_queue_.empty() || state_ == State::closed) {
    writing_ = false;
    return;
  }
  writing_ = true;
  asio::async_write(
      socket_, asio::buffer(write_queue_.front()),
      [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
        if (self->state_ == State::closed) return;
        if (ec) {
          self->end("QMP connection to " + self->path_.string() + " failed: " + ec.message(),
                    nullptr, true);
          return;
        }
        self->write_queue_.pop_front();
        self->write_next();
      });
}

void QmpClient::Impl::end(const std::string& reason, std::exception_ptr connect_error,
                          bool notify) {
  if (state_ == State::closed) return;
  const bool was_ready = state_ == State::ready;
  state_ = State::closed;
  end_reason_ = reason;
  boost::system::error_code ignored;
  socket_.close(ignored);  // completes the outstanding read/write with operation_aborted
  connect_timer_.cancel();
  command_timer_.cancel();
  command_timer_armed_.reset();

  auto failed = std::move(pending_);
  pending_.clear();
  for (auto& [id, pending] : failed) {
    if (!pending.handler) continue;
    auto error = std::make_exception_ptr(
        QmpDisconnected("QMP command \"" + pending.command + "\" got no reply: " + reason));
    defer([handler = std::move(pending.handler), error] { handler(error, nullptr); });
  }
  if (connect_handler_) {
    if (!connect_error) {
      connect_error = std::make_exception_ptr(QmpDisconnected(connect_failure(reason)));
    }
    defer([handler = std::move(connect_handler_), connect_error] { handler(connect_error, {}); });
    connect_handler_ = nullptr;
  }
  if (notify && was_ready && disconnect_handler_) {
    defer([handler = std::move(disconnect_handler_), reason] { handler(reason); });
    disconnect_handler_ = nullptr;
  }
}

QmpClient::QmpClient(boost::asio::any_io_executor executor)
    : impl_(std::make_shared<Impl>(std::move(executor))) {}

QmpClient::~QmpClient() {
  impl_->subscribers_.clear();
  impl_->disconnect_handler_ = nullptr;
  impl_->end("the QmpClient was destroyed", nullptr, false);
  impl_->drain();
}

void QmpClient::async_connect(const std::filesystem::path& socket, Clock::duration timeout,
                              ConnectHandler handler) {
  impl_->connect(socket, timeout, std::move(handler));
}

void QmpClient::async_execute(std::string command, nlohmann::json arguments,
                              Clock::duration timeout, ReplyHandler handler) {
  impl_->execute(std::move(command), std::move(arguments), timeout, std::move(handler));
}

int QmpClient::subscribe(EventHandler handler) {
  const int subscription = impl_->next_subscription_++;
  impl_->subscribers_.emplace(subscription, std::make_shared<EventHandler>(std::move(handler)));
  return subscription;
}

void QmpClient::unsubscribe(int subscription) {
  impl_->subscribers_.erase(subscription);
}

void QmpClient::on_disconnect(DisconnectHandler handler) {
  impl_->disconnect_handler_ = std::move(handler);
}

void QmpClient::close() {
  const std::string target = impl_->path_.empty() ? "QMP" : impl_->path_.string();
  impl_->end("the QMP session with " + target + " was closed", nullptr, false);
}

bool QmpClient::connected() const {
  return impl_->state_ == Impl::State::ready;
}

const QmpGreeting& QmpClient::greeting() const {
  return impl_->greeting_;
}

}  // namespace qvm
