#include "supervisor/control.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>

#include "store/files.hpp"

namespace qvm::supervisor {
namespace asio = boost::asio;
using boost::asio::local::stream_protocol;
namespace {

constexpr std::size_t kMaxRequest = 64 * 1024;

class Connection : public ControlReply, public std::enable_shared_from_this<Connection> {
 public:
  Connection(stream_protocol::socket socket, std::shared_ptr<ControlServer::Handler> handler)
      : socket_(std::move(socket)), buffer_(kMaxRequest), handler_(std::move(handler)) {}

  void start() {
    auto self = shared_from_this();
    asio::async_read_until(socket_, buffer_, '\n', [self](boost::system::error_code ec, std::size_t n) {
      if (ec) return;  // the client left, or sent more than a request can be
      std::string line(asio::buffers_begin(self->buffer_.data()),
                       asio::buffers_begin(self->buffer_.data()) + static_cast<std::ptrdiff_t>(n));
      self->buffer_.consume(n);
      auto request = parse_control_request(line);
      if (const auto* refused = std::get_if<std::string>(&request)) {
        self->finish({{"ok", false}, {"error", "malformed control request: " + *refused}});
        return;
      }
      (*self->handler_)(std::get<ControlRequest>(request), self);
    });
  }

  void progress(const std::string& message) override {
    if (!finished_) send(nlohmann::json{{"progress", message}}.dump() + "\n");
  }

  void finish(nlohmann::json reply) override {
    if (finished_) return;
    finished_ = true;
    send(reply.dump() + "\n");
  }

 private:
  void send(std::string line) {
    queue_.push_back(std::move(line));
    if (queue_.size() == 1) write_next();
  }

  void write_next() {
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(queue_.front()), [self](boost::system::error_code ec, std::size_t) {
      self->queue_.pop_front();
      if (ec) {
        self->queue_.clear();
        return;
      }
      if (!self->queue_.empty()) {
        self->write_next();
      } else if (self->finished_) {
        boost::system::error_code ignored;
        self->socket_.shutdown(stream_protocol::socket::shutdown_both, ignored);
        self->socket_.close(ignored);
      }
    });
  }

  stream_protocol::socket socket_;
  asio::streambuf buffer_;
  std::shared_ptr<ControlServer::Handler> handler_;
  std::deque<std::string> queue_;
  bool finished_ = false;
};

}  // namespace

struct ControlServer::Impl : std::enable_shared_from_this<ControlServer::Impl> {
  Impl(asio::io_context& io, std::filesystem::path path, Handler h)
      : acceptor(io), socket_path(std::move(path)), handler(std::make_shared<Handler>(std::move(h))) {}
  stream_protocol::acceptor acceptor;
  std::filesystem::path socket_path;
  std::shared_ptr<Handler> handler;
  bool closed = false;

  void accept() {
    auto self = shared_from_this();
    acceptor.async_accept([self](boost::system::error_code ec, stream_protocol::socket socket) {
      if (ec || self->closed) return;
      std::make_shared<Connection>(std::move(socket), self->handler)->start();
      self->accept();
    });
  }
};

std::variant<ControlRequest, std::string> parse_control_request(std::string_view line) {
  const nlohmann::json json = nlohmann::json::parse(line, nullptr, false);
  if (json.is_discarded() || !json.is_object()) return std::string("not a JSON object");
  ControlRequest request;
  const auto op = json.find("op");
  if (op == json.end() || !op->is_string()) return std::string("no \"op\"");
  request.op = op->get<std::string>();
  if (request.op != "down" && request.op != "kill" && request.op != "ping") {
    return "unknown operation \"" + request.op + "\"";
  }
  if (const auto timeout = json.find("timeout"); timeout != json.end()) {
    // Whole seconds only; a float such as 1e300 must never reach an integer conversion.
    // The parser stores every integer from 0 up as unsigned, and only those.
    if (!timeout->is_number_unsigned()) {
      return std::string("\"timeout\" is not a whole number of seconds, 0 or more");
    }
    const auto seconds = std::min(timeout->get<std::uint64_t>(),
                                  static_cast<std::uint64_t>(kMaxControlTimeout.count()));
    request.timeout = std::chrono::seconds(static_cast<std::int64_t>(seconds));
  }
  if (const auto force = json.find("force"); force != json.end()) {
    if (!force->is_boolean()) return std::string("\"force\" is not true or false");
    request.force = force->get<bool>();
  }
  return request;
}

ControlServer::ControlServer(asio::io_context& io, std::filesystem::path socket, Handler handler)
    : impl_(std::make_shared<Impl>(io, std::move(socket), std::move(handler))) {
  // Only a folder no one else can write to keeps what is bound in it ours; the stale socket
  // goes through that very folder's descriptor.
  const store::PrivateDir dir = store::open_private_dir(impl_->socket_path.parent_path());
  ::unlinkat(dir.fd(), impl_->socket_path.filename().c_str(), 0);
  // The umask makes the socket 0600 from the moment it exists.
  mode_t old = ::umask(0177);
  boost::system::error_code ec;
  impl_->acceptor.open(stream_protocol(), ec);
  if (!ec) impl_->acceptor.bind(stream_protocol::endpoint(impl_->socket_path.string()), ec);
  ::umask(old);
  if (!ec) impl_->acceptor.listen(16, ec);
  if (ec) throw Error("cannot serve " + impl_->socket_path.string() + ": " + ec.message());
  impl_->accept();
}

ControlServer::~ControlServer() { close(); }

void ControlServer::close() {
  if (impl_->closed) return;
  impl_->closed = true;
  boost::system::error_code ignored;
  impl_->acceptor.close(ignored);
  ::unlink(impl_->socket_path.c_str());
}

nlohmann::json control_request(const std::filesystem::path& socket, const nlohmann::json& request,
                               std::chrono::milliseconds timeout,
                               const std::function<void(const std::string&)>& progress) {
  const std::string where = "the supervisor at " + socket.string();
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket.string().size() >= sizeof address.sun_path) {
    throw SupervisorUnreachable(where + " has a path too long for a socket");
  }
  std::strcpy(address.sun_path, socket.c_str());
  // A socket in a folder another user controls may be theirs, answering as a supervisor.
  try {
    store::open_private_dir(socket.parent_path());
  } catch (const Error& e) {
    throw SupervisorUnreachable(where + " is not in a private folder of this user: " + e.what());
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Error(std::string("socket: ") + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    throw SupervisorUnreachable(where + " does not answer: " + std::strerror(errno));
  }
  std::string line = request.dump() + "\n";
  for (std::size_t sent = 0; sent < line.size();) {
    ssize_t n = ::send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw SupervisorUnreachable(where + " hung up: " + std::strerror(errno));
    }
    sent += static_cast<std::size_t>(n);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string buffer;
  for (;;) {
    for (auto newline = buffer.find('\n'); newline != std::string::npos; newline = buffer.find('\n')) {
      auto message = nlohmann::json::parse(buffer.substr(0, newline), nullptr, false);
      buffer.erase(0, newline + 1);
      if (!message.is_object()) throw Error(where + " sent a malformed reply");
      if (message.contains("progress")) {
        if (progress) progress(message["progress"].get<std::string>());
        continue;
      }
      return message;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) throw Error(where + " did not answer within " + std::to_string(timeout.count() / 1000) + " s");
    pollfd entry{fd, POLLIN, 0};
    int r = ::poll(&entry, 1, static_cast<int>(left.count()));
    if (r < 0 && errno != EINTR) throw Error(std::string("poll: ") + std::strerror(errno));
    if (r <= 0) continue;
    char chunk[4096];
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw SupervisorUnreachable(where + " hung up before replying");
    buffer.append(chunk, static_cast<std::size_t>(n));
    if (buffer.size() > kMaxRequest * 16) throw Error(where + " sent an oversized reply");
  }
}

}  // namespace qvm::supervisor
