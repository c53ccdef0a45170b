#include "support/fake_qmp_server.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "support/temp_dir.hpp"

namespace qvm::testing {
namespace {

namespace asio = boost::asio;
using Socket = asio::local::stream_protocol::socket;
using nlohmann::json;

// Long enough for the client to wake up and read between two bytes, so that it really sees a
// message in many reads.
constexpr auto kBytePause = std::chrono::microseconds(200);

std::string line_of(const json& message) {
  return message.dump() + "\n";
}

}  // namespace

FakeReply FakeReply::ok(json value) {
  return FakeReply(Step{Step::Kind::reply, {}, json{{"return", std::move(value)}}, {}});
}

FakeReply FakeReply::error(std::string error_class, std::string desc) {
  return FakeReply(
      Step{Step::Kind::reply,
           {},
           json{{"error", {{"class", std::move(error_class)}, {"desc", std::move(desc)}}}},
           {}});
}

FakeReply FakeReply::raw(std::string bytes) {
  return FakeReply(Step{Step::Kind::raw, {}, {}, std::move(bytes)});
}

FakeReply FakeReply::hang_up() {
  return FakeReply(Step{Step::Kind::hang_up, {}, {}, {}});
}

FakeReply FakeReply::reset() {
  return FakeReply(Step{Step::Kind::reset, {}, {}, {}});
}

FakeReply FakeReply::silence() {
  return FakeReply();
}

FakeReply FakeReply::after(std::chrono::milliseconds delay) && {
  steps_.insert(steps_.begin(), Step{Step::Kind::delay, delay, {}, {}});
  return std::move(*this);
}

FakeReply FakeReply::preceded_by(json message) && {
  steps_.insert(steps_.begin(), Step{Step::Kind::message, {}, std::move(message), {}});
  return std::move(*this);
}

FakeReply FakeReply::then_hang_up() && {
  steps_.push_back(Step{Step::Kind::hang_up, {}, {}, {}});
  return std::move(*this);
}

FakeReply FakeReply::with_id(json id) && {
  id_ = Id::replace;
  id_value_ = std::move(id);
  return std::move(*this);
}

FakeReply FakeReply::without_id() && {
  id_ = Id::omit;
  return std::move(*this);
}

// Everything below runs on the server thread, except what touches the members under `mutex`.
struct FakeQmpServer::Impl {
  struct Outgoing {
    enum class Kind { bytes, hang_up, reset } kind;
    std::string bytes;
  };

  struct Connection {
    explicit Connection(Socket s, asio::io_context& io) : socket(std::move(s)), pause(io) {}
    Socket socket;
    asio::steady_timer pause;  // between bytes in byte-by-byte mode
    std::string partial;       // consumed bytes of an incomplete request line
    std::vector<char> peek = std::vector<char>(64 * 1024);
    std::deque<Outgoing> out;
    std::size_t written = 0;  // of out.front(), in byte-by-byte mode
    bool writing = false;
    bool reading = true;
    bool negotiated = false;
    bool open = true;
  };

  struct Expectation {
    std::string command;
    std::optional<json> arguments;
    std::shared_ptr<const FakeReply> reply;
  };

  explicit Impl(Options o) : options(std::move(o)), path(dir / "qmp.sock") {}

  void start();
  void shutdown();
  void accept_next();
  void on_accept(Socket socket);
  void read(const std::shared_ptr<Connection>& conn);
  void on_readable(const std::shared_ptr<Connection>& conn);
  std::shared_ptr<const FakeReply> respond_to(const std::shared_ptr<Connection>& conn,
                                              const std::string& line, json& request_id);
  void run(const std::shared_ptr<Connection>& conn, std::shared_ptr<const FakeReply> reply,
           json request_id, std::size_t step);
  void queue(const std::shared_ptr<Connection>& conn, Outgoing item);
  void deliver(Outgoing item);
  void write_next(const std::shared_ptr<Connection>& conn);
  void after_write(const std::shared_ptr<Connection>& conn, const boost::system::error_code& ec,
                   std::size_t size);
  void close(const std::shared_ptr<Connection>& conn, bool reset);

  const Options options;
  TempDir dir;
  const std::filesystem::path path;

  asio::io_context io;
  asio::local::stream_protocol::acceptor acceptor{io};
  std::thread thread;

  // Server thread only.
  std::shared_ptr<Connection> current;
  std::vector<Outgoing> outbox;  // for the next connection
  bool accepting = false;
  bool stopping = false;

  // Shared with the test thread.
  mutable std::mutex mutex;
  mutable std::condition_variable received_changed;
  std::deque<Expectation> expectations;
  std::vector<json> received;
  int connections = 0;
};

void FakeQmpServer::Impl::start() {
  acceptor.open();
  acceptor.bind(asio::local::stream_protocol::endpoint(path.string()));
  acceptor.listen();
  accept_next();
  thread = std::thread([this] {
    auto work = asio::make_work_guard(io);
    try {
      io.run();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "FakeQmpServer thread threw: " << e.what();
    }
  });
}

void FakeQmpServer::Impl::shutdown() {
  stopping = true;
  boost::system::error_code ignored;
  acceptor.close(ignored);
  if (current) close(current, false);
  io.stop();
}

void FakeQmpServer::Impl::accept_next() {
  // Like a QEMU chardev server: one client at a time, the next one waits in the backlog.
  if (accepting || current || stopping) return;
  accepting = true;
  acceptor.async_accept([this](const boost::system::error_code& ec, Socket socket) {
    accepting = false;
    if (!ec && !stopping) on_accept(std::move(socket));
  });
}

void FakeQmpServer::Impl::on_accept(Socket socket) {
  auto conn = std::make_shared<Connection>(std::move(socket), io);
  conn->socket.non_blocking(true);
  current = conn;
  {
    std::lock_guard lock(mutex);
    ++connections;
  }
  for (const json& message : options.before_greeting) {
    queue(conn, {Outgoing::Kind::bytes, line_of(message)});
  }
  if (options.greeting) queue(conn, {Outgoing::Kind::bytes, line_of(*options.greeting)});
  for (Outgoing& item : outbox) queue(conn, std::move(item));
  outbox.clear();
  read(conn);
}

void FakeQmpServer::Impl::read(const std::shared_ptr<Connection>& conn) {
  conn->socket.async_wait(Socket::wait_read, [this, conn](const boost::system::error_code& ec) {
    if (!ec && conn->open && conn->reading) on_readable(conn);
  });
}

// Requests are peeked, then consumed one line at a time, so that a line can be left unread on
// purpose (FakeReply::reset).
void FakeQmpServer::Impl::on_readable(const std::shared_ptr<Connection>& conn) {
  while (conn->open && conn->reading) {
    boost::system::error_code ec;
    const std::size_t size =
        conn->socket.receive(asio::buffer(conn->peek), Socket::message_peek, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) break;
    if (ec || size == 0) {  // the client hung up
      close(conn, false);
      return;
    }
    const std::string_view peeked(conn->peek.data(), size);
    const std::size_t newline = peeked.find('\n');
    if (newline == std::string_view::npos) {
      conn->partial.append(peeked);
      conn->socket.receive(asio::buffer(conn->peek, size), 0, ec);
      continue;
    }
    const std::string line = conn->partial + std::string(peeked.substr(0, newline));
    json request_id;
    std::shared_ptr<const FakeReply> reply = respond_to(conn, line, request_id);
    const bool leave_unread = std::any_of(
        reply->steps_.begin(), reply->steps_.end(),
        [](const FakeReply::Step& s) { return s.kind == FakeReply::Step::Kind::reset; });
    if (leave_unread) {
      conn->reading = false;
    } else {
      conn->socket.receive(asio::buffer(conn->peek, newline + 1), 0, ec);
      conn->partial.clear();
    }
    run(conn, std::move(reply), std::move(request_id), 0);
  }
  if (conn->open && conn->reading) read(conn);
}

std::shared_ptr<const FakeReply> FakeQmpServer::Impl::respond_to(
    const std::shared_ptr<Connection>& conn, const std::string& line, json& request_id) {
  json request = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded() || !request.is_object()) {
    ADD_FAILURE() << "FakeQmpServer received a request that is not a JSON object: " << line;
    // What QEMU does: an error without id.
    return std::make_shared<FakeReply>(
        FakeReply::error("GenericError", "JSON parse error").without_id());
  }
  {
    std::lock_guard lock(mutex);
    received.push_back(request);
  }
  received_changed.notify_all();

  const auto id = request.find("id");
  request_id = id == request.end() ? json() : *id;
  const auto execute = request.find("execute");
  const std::string command =
      execute != request.end() && execute->is_string() ? execute->get<std::string>() : "";
  auto refuse = [&](std::string error_class, std::string desc) {
    FakeReply reply = FakeReply::error(std::move(error_class), std::move(desc));
    if (id == request.end()) reply = std::move(reply).without_id();
    return std::make_shared<FakeReply>(std::move(reply));
  };

  if (options.greeting && options.negotiate && !conn->negotiated) {
    if (command == "qmp_capabilities") {
      conn->negotiated = true;
      return std::make_shared<FakeReply>(FakeReply::ok());
    }
    ADD_FAILURE() << "FakeQmpServer expected qmp_capabilities first, received: " << line;
    return refuse("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'");
  }

  std::string failure;
  std::shared_ptr<const FakeReply> reply;
  {
    std::lock_guard lock(mutex);
    if (expectations.empty()) {
      failure = "FakeQmpServer received an unexpected command: " + line;
    } else if (expectations.front().command != command) {
      failure = "FakeQmpServer expected command \"" + expectations.front().command +
                "\", received: " + line;
    } else {
      const Expectation& expected = expectations.front();
      if (expected.arguments) {
        const auto arguments = request.find("arguments");
        const json actual = arguments == request.end() ? json::object() : *arguments;
        if (actual != *expected.arguments) {
          failure = "FakeQmpServer expected arguments " + expected.arguments->dump() + " for \"" +
                    command + "\", received: " + line;
        }
      }
      reply = expected.reply;
      expectations.pop_front();
    }
  }
  if (!failure.empty()) ADD_FAILURE() << failure;
  if (!reply) return refuse("CommandNotFound", "The command " + command + " has not been found");
  return reply;
}

void FakeQmpServer::Impl::run(const std::shared_ptr<Connection>& conn,
                              std::shared_ptr<const FakeReply> reply, json request_id,
                              std::size_t step) {
  for (; step < reply->steps_.size() && conn->open; ++step) {
    const FakeReply::Step& s = reply->steps_[step];
    switch (s.kind) {
      case FakeReply::Step::Kind::delay: {
        auto timer = std::make_shared<asio::steady_timer>(io, s.delay);
        timer->async_wait(
            [this, conn, reply, request_id, step, timer](const boost::system::error_code& ec) {
              if (!ec) run(conn, reply, request_id, step + 1);
            });
        return;
      }
      case FakeReply::Step::Kind::message:
        queue(conn, {Outgoing::Kind::bytes, line_of(s.message)});
        break;
      case FakeReply::Step::Kind::reply: {
        json message = s.message;
        if (reply->id_ == FakeReply::Id::replace) {
          message["id"] = reply->id_value_;
        } else if (reply->id_ == FakeReply::Id::echo && !request_id.is_null()) {
          message["id"] = request_id;
        }
        queue(conn, {Outgoing::Kind::bytes, line_of(message)});
        break;
      }
      case FakeReply::Step::Kind::raw:
        queue(conn, {Outgoing::Kind::bytes, s.bytes});
        break;
      case FakeReply::Step::Kind::hang_up:
        queue(conn, {Outgoing::Kind::hang_up, {}});
        break;
      case FakeReply::Step::Kind::reset:
        queue(conn, {Outgoing::Kind::reset, {}});
        break;
    }
  }
}

void FakeQmpServer::Impl::deliver(Outgoing item) {
  if (current) {
    queue(current, std::move(item));
  } else if (item.kind == Outgoing::Kind::bytes) {
    outbox.push_back(std::move(item));
  }
}

void FakeQmpServer::Impl::queue(const std::shared_ptr<Connection>& conn, Outgoing item) {
  if (!conn->open) return;
  conn->out.push_back(std::move(item));
  if (!conn->writing) write_next(conn);
}

void FakeQmpServer::Impl::write_next(const std::shared_ptr<Connection>& conn) {
  if (!conn->open) return;
  if (conn->out.empty()) {
    conn->writing = false;
    return;
  }
  conn->writing = true;
  Outgoing& item = conn->out.front();
  switch (item.kind) {
    case Outgoing::Kind::bytes:
      if (options.byte_by_byte) {
        asio::async_write(conn->socket, asio::buffer(item.bytes.data() + conn->written, 1),
                          [this, conn](const boost::system::error_code& ec, std::size_t size) {
                            after_write(conn, ec, size);
                          });
      } else {
        asio::async_write(conn->socket, asio::buffer(item.bytes),
                          [this, conn](const boost::system::error_code& ec, std::size_t size) {
                            after_write(conn, ec, size);
                          });
      }
      return;
    case Outgoing::Kind::hang_up:
      close(conn, false);
      return;
    case Outgoing::Kind::reset:
      close(conn, true);
      return;
  }
}

void FakeQmpServer::Impl::after_write(const std::shared_ptr<Connection>& conn,
                                      const boost::system::error_code& ec, std::size_t size) {
  if (!conn->open) return;
  if (ec) {  // the client went away (e.g. after refusing a line over the cap)
    close(conn, false);
    return;
  }
  if (options.byte_by_byte) {
    conn->written += size;
    if (conn->written < conn->out.front().bytes.size()) {
      conn->pause.expires_after(kBytePause);
      conn->pause.async_wait([this, conn](const boost::system::error_code& wait_ec) {
        if (!wait_ec) write_next(conn);
      });
      return;
    }
    conn->written = 0;
  }
  conn->out.pop_front();
  write_next(conn);
}

void FakeQmpServer::Impl::close(const std::shared_ptr<Connection>& conn, bool reset) {
  if (!conn->open) return;
  conn->open = false;
  boost::system::error_code ignored;
  if (reset) {
    conn->socket.set_option(asio::socket_base::linger(true, 0), ignored);
  } else {
    // Unread bytes would turn the client's EOF into ECONNRESET: read them first.
    while (conn->socket.receive(asio::buffer(conn->peek), 0, ignored) > 0) {
    }
    conn->socket.shutdown(Socket::shutdown_both, ignored);
  }
  conn->socket.close(ignored);
  conn->pause.cancel();
  if (current == conn) current.reset();
  accept_next();
}

FakeQmpServer::FakeQmpServer() : FakeQmpServer(Options{}) {}

FakeQmpServer::FakeQmpServer(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {
  impl_->start();
}

FakeQmpServer::~FakeQmpServer() {
  asio::post(impl_->io, [impl = impl_.get()] { impl->shutdown(); });
  impl_->thread.join();
  std::lock_guard lock(impl_->mutex);
  if (!impl_->expectations.empty()) {
    std::string missing;
    for (const Impl::Expectation& expected : impl_->expectations) {
      missing += (missing.empty() ? "" : ", ") + expected.command;
    }
    ADD_FAILURE() << "FakeQmpServer never received the expected commands: " << missing;
  }
}

const std::filesystem::path& FakeQmpServer::socket_path() const {
  return impl_->path;
}

void FakeQmpServer::expect(std::string command, FakeReply reply) {
  std::lock_guard lock(impl_->mutex);
  impl_->expectations.push_back(
      {std::move(command), std::nullopt, std::make_shared<const FakeReply>(std::move(reply))});
}

void FakeQmpServer::expect(std::string command, json arguments, FakeReply reply) {
  std::lock_guard lock(impl_->mutex);
  impl_->expectations.push_back({std::move(command), std::move(arguments),
                                 std::make_shared<const FakeReply>(std::move(reply))});
}

void FakeQmpServer::send(json message) {
  asio::post(impl_->io, [impl = impl_.get(), line = line_of(message)] {
    impl->deliver({Impl::Outgoing::Kind::bytes, line});
  });
}

void FakeQmpServer::send_event(std::string name, json data) {
  send(event(std::move(name), std::move(data)));
}

void FakeQmpServer::write_raw(std::string bytes) {
  asio::post(impl_->io, [impl = impl_.get(), bytes = std::move(bytes)] {
    impl->deliver({Impl::Outgoing::Kind::bytes, bytes});
  });
}

void FakeQmpServer::hang_up() {
  asio::post(impl_->io, [impl = impl_.get()] {
    if (impl->current) impl->queue(impl->current, {Impl::Outgoing::Kind::hang_up, {}});
  });
}

void FakeQmpServer::reset() {
  std::promise<void> applied;
  asio::post(impl_->io, [impl = impl_.get(), &applied] {
    const std::shared_ptr<Impl::Connection> conn = impl->current;
    if (conn) {
      conn->reading = false;
      conn->socket.async_wait(Socket::wait_read, [impl, conn](const boost::system::error_code& ec) {
        if (!ec) impl->queue(conn, {Impl::Outgoing::Kind::reset, {}});
      });
    }
    applied.set_value();
  });
  applied.get_future().wait();
}

std::vector<json> FakeQmpServer::received() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->received;
}

bool FakeQmpServer::wait_received(std::size_t count, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mutex);
  return impl_->received_changed.wait_for(lock, timeout,
                                          [&] { return impl_->received.size() >= count; });
}

int FakeQmpServer::connections() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->connections;
}

json FakeQmpServer::default_greeting() {
  return json::parse(R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7},
                                              "package": "v7.2.0"},
                                  "capabilities": ["oob"]}})");
}

json FakeQmpServer::event(std::string name, json data) {
  const auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  const auto microseconds =
      std::chrono::duration_cast<std::chrono::microseconds>(since_epoch - seconds);
  return {{"event", std::move(name)},
          {"data", std::move(data)},
          {"timestamp", {{"seconds", seconds.count()}, {"microseconds", microseconds.count()}}}};
}

}  // namespace qvm::testing
