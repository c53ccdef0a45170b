#include "support/fake_agent_server.hpp"

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <variant>

#include "support/temp_dir.hpp"

namespace qvm::testing {
namespace {

namespace asio = boost::asio;
using Socket = asio::local::stream_protocol::socket;
using nlohmann::json;

std::string line_of(const json& message) {
  return message.dump() + "\n";
}

// Deliberately not the client's own codec, so that a bug there cannot cancel itself out here.
std::string encode_base64(const std::string& bytes) {
  static const char* const kDigits =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  unsigned buffer = 0;
  int bits = 0;
  for (const unsigned char c : bytes) {
    buffer = (buffer << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kDigits[(buffer >> bits) & 63];
    }
  }
  if (bits > 0) out += kDigits[(buffer << (6 - bits)) & 63];
  while (out.size() % 4 != 0) out += '=';
  return out;
}

std::string decode_base64(const std::string& text) {
  const std::string digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  unsigned buffer = 0;
  int bits = 0;
  for (const char c : text) {
    const auto value = digits.find(c);
    if (value == std::string::npos) continue;
    buffer = (buffer << 6) | static_cast<unsigned>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buffer >> bits) & 0xff);
    }
  }
  return out;
}

// The words and operators of the small shell scripts exec_streaming sends: single quotes,
// blanks, ';', '>', '2>', '<'. Enough to check what the client quoted, not a shell.
struct ShellToken {
  bool op = false;
  std::string text;
};

std::optional<std::vector<ShellToken>> tokenize(const std::string& script) {
  std::vector<ShellToken> tokens;
  std::string word;
  bool in_word = false;
  const auto flush = [&] {
    if (in_word) tokens.push_back({false, word});
    word.clear();
    in_word = false;
  };
  for (std::size_t i = 0; i < script.size(); ++i) {
    const char c = script[i];
    if (c == '\'') {
      const auto end = script.find('\'', i + 1);
      if (end == std::string::npos) return std::nullopt;
      word += script.substr(i + 1, end - i - 1);
      in_word = true;
      i = end;
    } else if (c == '\\' && i + 1 < script.size()) {
      word += script[++i];
      in_word = true;
    } else if (c == ' ' || c == '\t' || c == '\n') {
      flush();
    } else if (c == ';' || c == '>' || c == '<') {
      if (c == '>' && in_word && word == "2") {
        word.clear();
        in_word = false;
        tokens.push_back({true, "2>"});
        continue;
      }
      flush();
      tokens.push_back({true, std::string(1, c)});
    } else {
      word += c;
      in_word = true;
    }
  }
  flush();
  return tokens;
}

}  // namespace

FakeAgentReply FakeAgentReply::ok(json value) {
  return FakeAgentReply(Step{Step::Kind::bytes, {}, line_of({{"return", std::move(value)}})});
}

FakeAgentReply FakeAgentReply::error(std::string error_class, std::string desc) {
  return FakeAgentReply(
      Step{Step::Kind::bytes,
           {},
           line_of({{"error", {{"class", std::move(error_class)}, {"desc", std::move(desc)}}}})});
}

FakeAgentReply FakeAgentReply::raw(std::string bytes) {
  return FakeAgentReply(Step{Step::Kind::bytes, {}, std::move(bytes)});
}

FakeAgentReply FakeAgentReply::hang_up() {
  return FakeAgentReply(Step{Step::Kind::hang_up, {}, {}});
}

FakeAgentReply FakeAgentReply::silence() {
  return FakeAgentReply();
}

FakeAgentReply FakeAgentReply::after(std::chrono::milliseconds delay) && {
  steps_.insert(steps_.begin(), Step{Step::Kind::delay, delay, {}});
  return std::move(*this);
}

FakeAgentReply FakeAgentReply::preceded_by_raw(std::string bytes) && {
  steps_.insert(steps_.begin(), Step{Step::Kind::bytes, {}, std::move(bytes)});
  return std::move(*this);
}

FakeAgentReply FakeAgentReply::then_hang_up() && {
  steps_.push_back(Step{Step::Kind::hang_up, {}, {}});
  return std::move(*this);
}

// Everything below runs on the server thread, except what touches the members under `mutex`.
struct FakeAgentServer::Impl {
  struct Connection {
    explicit Connection(Socket s) : socket(std::move(s)) {}
    Socket socket;
    std::vector<char> buffer = std::vector<char>(64 * 1024);
    std::string partial;
    std::deque<std::string> out;
    bool writing = false;
    bool open = true;
  };

  // A line to handle, or a stray 0xFF (which qemu-ga answers with a parse error).
  struct Input {
    bool delimiter = false;
    std::string line;
  };

  struct Expectation {
    std::string command;
    std::optional<json> arguments;
    std::shared_ptr<const FakeAgentReply> reply;
    std::optional<FakeProcess> process;
  };

  struct Process {
    FakeProcess script;
    bool capture = false;
    // Streaming: the files its stdout / stderr were redirected to (unlinked or not).
    std::shared_ptr<std::string> out_file, err_file;
  };

  struct Handle {
    std::shared_ptr<std::string> data;
    std::size_t position = 0;
  };

  explicit Impl(Options o) : options(std::move(o)), path(dir / "agent.sock") {}

  void start();
  void shutdown();
  void accept_next();
  void read(const std::shared_ptr<Connection>& conn);
  void pump();
  std::shared_ptr<const FakeAgentReply> handle(const std::string& line);
  std::shared_ptr<const FakeAgentReply> start_process(const json& request, FakeProcess script);
  std::shared_ptr<const FakeAgentReply> exec_status(const json& arguments);
  std::shared_ptr<const FakeAgentReply> file_command(const std::string& command,
                                                     const json& arguments);
  std::shared_ptr<std::string> redirect(const std::string& target);
  void write_output(const std::shared_ptr<std::string>& file, const std::string& bytes);
  void run(std::shared_ptr<const FakeAgentReply> reply, std::size_t step);
  void queue(std::string bytes);
  void write_next(const std::shared_ptr<Connection>& conn);
  void close(const std::shared_ptr<Connection>& conn);

  static std::shared_ptr<const FakeAgentReply> reply(FakeAgentReply r) {
    return std::make_shared<const FakeAgentReply>(std::move(r));
  }
  static std::shared_ptr<const FakeAgentReply> fail(std::string desc) {
    return reply(FakeAgentReply::error("GenericError", std::move(desc)));
  }

  const Options options;
  TempDir dir;
  const std::filesystem::path path;

  asio::io_context io;
  asio::local::stream_protocol::acceptor acceptor{io};
  std::thread thread;

  // Server thread only.
  std::shared_ptr<Connection> current;
  std::deque<Input> inputs;
  bool busy = false;  // a reply's steps are running
  bool accepting = false;
  bool stopping = false;
  std::int64_t next_pid = 1000;
  std::int64_t next_handle = 2000;
  std::map<std::int64_t, Process> processes;

  // Shared with the test thread.
  mutable std::mutex mutex;
  mutable std::condition_variable changed;
  std::deque<Expectation> expectations;
  std::vector<json> received;
  int connections = 0;
  bool released = false;
  std::map<std::string, std::shared_ptr<std::string>> files;
  std::map<std::int64_t, Handle> handles;
};

void FakeAgentServer::Impl::start() {
  acceptor.open();
  acceptor.bind(asio::local::stream_protocol::endpoint(path.string()));
  acceptor.listen();
  accept_next();
  thread = std::thread([this] {
    auto work = asio::make_work_guard(io);
    try {
      io.run();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "FakeAgentServer thread threw: " << e.what();
    }
  });
}

void FakeAgentServer::Impl::shutdown() {
  stopping = true;
  boost::system::error_code ignored;
  acceptor.close(ignored);
  if (current) close(current);
  io.stop();
}

void FakeAgentServer::Impl::accept_next() {
  // Like QEMU's chardev: one client at a time, the next one waits in the backlog.
  if (accepting || current || stopping) return;
  accepting = true;
  acceptor.async_accept([this](const boost::system::error_code& ec, Socket socket) {
    accepting = false;
    if (ec || stopping) return;
    current = std::make_shared<Connection>(std::move(socket));
    {
      std::lock_guard lock(mutex);
      ++connections;
    }
    if (!options.stale.empty()) queue(options.stale);
    read(current);
  });
}

void FakeAgentServer::Impl::read(const std::shared_ptr<Connection>& conn) {
  conn->socket.async_read_some(asio::buffer(conn->buffer),
                               [this, conn](const boost::system::error_code& ec, std::size_t n) {
                                 if (!conn->open) return;
                                 if (ec) {
                                   close(conn);
                                   return;
                                 }
                                 for (std::size_t i = 0; i < n; ++i) {
                                   const char c = conn->buffer[i];
                                   if (c == '\xff') {
                                     conn->partial.clear();
                                     inputs.push_back({true, {}});
                                   } else if (c == '\n') {
                                     inputs.push_back({false, std::move(conn->partial)});
                                     conn->partial.clear();
                                   } else {
                                     conn->partial += c;
                                   }
                                 }
                                 pump();
                                 read(conn);
                               });
}

// One request at a time, as qemu-ga does: the next waits until the current reply is written.
void FakeAgentServer::Impl::pump() {
  while (!busy && !inputs.empty() && current) {
    Input input = std::move(inputs.front());
    inputs.pop_front();
    if (!options.answering) continue;
    if (input.delimiter) {
      queue(line_of(
          {{"error", {{"class", "GenericError"}, {"desc", "JSON parse error, stray '\\xff'"}}}}));
      continue;
    }
    if (input.line.empty() || input.line == "\r") continue;
    std::shared_ptr<const FakeAgentReply> r = handle(input.line);
    busy = true;
    run(std::move(r), 0);
  }
}

std::shared_ptr<const FakeAgentReply> FakeAgentServer::Impl::handle(const std::string& line) {
  json request = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded() || !request.is_object()) {
    ADD_FAILURE() << "FakeAgentServer received a request that is not a JSON object: " << line;
    return fail("JSON parse error");
  }
  {
    std::lock_guard lock(mutex);
    received.push_back(request);
  }
  changed.notify_all();
  if (request.contains("id")) {
    ADD_FAILURE() << "qemu-ga requests carry no id: " << line;
  }
  const std::string command = request.value("execute", "");
  const json arguments = request.value("arguments", json::object());

  if (command == "guest-sync-delimited") {
    return reply(
        FakeAgentReply::raw("\xff" + line_of({{"return", arguments.value("id", json())}})));
  }
  if (command == "guest-exec-status" &&
      processes.count(arguments.value("pid", std::int64_t{-1})) != 0) {
    return exec_status(arguments);
  }
  if (command.rfind("guest-file-", 0) == 0) return file_command(command, arguments);

  std::string failure;
  std::optional<Expectation> expected;
  {
    std::lock_guard lock(mutex);
    if (expectations.empty()) {
      failure = "FakeAgentServer received an unexpected command: " + line;
    } else if (expectations.front().command != command) {
      failure = "FakeAgentServer expected command \"" + expectations.front().command +
                "\", received: " + line;
    } else {
      expected = std::move(expectations.front());
      expectations.pop_front();
    }
  }
  if (!failure.empty()) {
    ADD_FAILURE() << failure;
    return reply(
        FakeAgentReply::error("CommandNotFound", "The command " + command + " has not been found"));
  }
  if (expected->process) return start_process(request, std::move(*expected->process));
  if (expected->arguments && arguments != *expected->arguments) {
    ADD_FAILURE() << "FakeAgentServer expected arguments " << expected->arguments->dump()
                  << " for \"" << command << "\", received: " << line;
  }
  return expected->reply;
}

std::shared_ptr<const FakeAgentReply> FakeAgentServer::Impl::start_process(const json& request,
                                                                           FakeProcess script) {
  const json arguments = request.value("arguments", json::object());
  Process process;
  process.capture = arguments.value("capture-output", false);
  std::vector<std::string> argv = {arguments.value("path", "")};
  for (const json& word : arguments.value("arg", json::array())) argv.push_back(word);

  if (argv.size() == 3 && argv[0] == "/bin/sh" && argv[1] == "-c" && !process.capture) {
    // exec_streaming: "exec >OUT 2>ERR </dev/null; rm -f -- OUT ERR; exec ARGV..."
    const auto tokens = tokenize(argv[2]);
    if (!tokens) {
      ADD_FAILURE() << "unbalanced quotes in: " << argv[2];
      return fail("sh: syntax error");
    }
    std::vector<std::vector<ShellToken>> commands(1);
    for (const ShellToken& token : *tokens) {
      if (token.op && token.text == ";") {
        commands.emplace_back();
      } else {
        commands.back().push_back(token);
      }
    }
    for (const auto& words : commands) {
      if (words.empty()) continue;
      if (words[0].op || words[0].text == "exec") {
        std::vector<std::string> rest;
        for (std::size_t i = words[0].op ? 0 : 1; i < words.size(); ++i) {
          if (words[i].op && i + 1 < words.size()) {
            if (words[i].text == ">") process.out_file = redirect(words[i + 1].text);
            if (words[i].text == "2>") process.err_file = redirect(words[i + 1].text);
            ++i;
          } else {
            rest.push_back(words[i].text);
          }
        }
        if (!rest.empty()) argv = rest;
      } else if (words[0].text == "rm") {
        std::lock_guard lock(mutex);
        for (std::size_t i = 1; i < words.size(); ++i) files.erase(words[i].text);
      }
    }
  }
  if (argv != script.argv) {
    ADD_FAILURE() << "FakeAgentServer expected guest-exec of " << json(script.argv).dump()
                  << ", received: " << request.dump();
  }
  if (script.input) {
    EXPECT_EQ(decode_base64(arguments.value("input-data", "")), *script.input)
        << "input-data of " << request.dump();
  }
  if (!process.capture && (!process.out_file || !process.err_file)) {
    ADD_FAILURE() << "guest-exec without capture-output and without redirections: "
                  << request.dump();
  }
  const std::int64_t pid = next_pid++;
  process.script = std::move(script);
  write_output(process.out_file, process.script.out);
  write_output(process.err_file, process.script.err);
  processes.emplace(pid, std::move(process));
  return reply(FakeAgentReply::ok({{"pid", pid}}));
}

// A shell redirection: creates the file, or truncates the existing one (which handles opened
// before then go on reading).
std::shared_ptr<std::string> FakeAgentServer::Impl::redirect(const std::string& target) {
  std::lock_guard lock(mutex);
  auto& file = files[target];
  if (file) {
    file->clear();
  } else {
    file = std::make_shared<std::string>();
  }
  return file;
}

void FakeAgentServer::Impl::write_output(const std::shared_ptr<std::string>& file,
                                         const std::string& bytes) {
  if (!file) return;
  std::lock_guard lock(mutex);
  file->append(bytes);
}

std::shared_ptr<const FakeAgentReply> FakeAgentServer::Impl::exec_status(const json& arguments) {
  const std::int64_t pid = arguments.value("pid", std::int64_t{-1});
  const auto it = processes.find(pid);
  if (it == processes.end()) return fail("Invalid parameter 'pid'");
  Process& process = it->second;
  bool released_now;
  {
    std::lock_guard lock(mutex);
    released_now = released;
  }
  if (process.script.running_polls > 0) {
    --process.script.running_polls;
    return reply(FakeAgentReply::ok({{"exited", false}}));
  }
  if (process.script.until_released && !released_now) {
    return reply(FakeAgentReply::ok({{"exited", false}}));
  }
  json status = {{"exited", true}};
  if (process.script.signal) {
    status["signal"] = *process.script.signal;
  } else {
    status["exitcode"] = process.script.exit_code;
  }
  if (process.capture) {
    const std::string out = process.script.out + process.script.late_out;
    const std::string err = process.script.err + process.script.late_err;
    if (!out.empty()) {
      status["out-data"] = encode_base64(out);
      status["out-truncated"] = false;
    }
    if (!err.empty()) {
      status["err-data"] = encode_base64(err);
      status["err-truncated"] = false;
    }
  } else {
    write_output(process.out_file, process.script.late_out);
    write_output(process.err_file, process.script.late_err);
  }
  // qemu-ga forgets a process once it has reported its exit.
  processes.erase(it);
  return reply(FakeAgentReply::ok(status));
}

std::shared_ptr<const FakeAgentReply> FakeAgentServer::Impl::file_command(
    const std::string& command, const json& arguments) {
  std::lock_guard lock(mutex);
  if (command == "guest-file-open") {
    const std::string file = arguments.value("path", "");
    const std::string mode = arguments.value("mode", "r");
    auto it = files.find(file);
    if (mode == "r" || mode == "r+") {
      if (it == files.end()) {
        return fail("failed to open file '" + file + "' (mode: '" + mode +
                    "'): No such file or directory");
      }
    } else if (mode == "w" || mode == "w+") {
      if (it == files.end()) {
        it = files.emplace(file, std::make_shared<std::string>()).first;
      } else {
        it->second->clear();
      }
    } else {
      return fail("invalid file open mode '" + mode + "'");
    }
    const std::int64_t id = next_handle++;
    handles[id] = Handle{it->second, 0};
    return reply(FakeAgentReply::ok(id));
  }
  const std::int64_t id = arguments.value("handle", std::int64_t{-1});
  const auto it = handles.find(id);
  if (it == handles.end()) return fail("handle '" + std::to_string(id) + "' has not been found");
  if (command == "guest-file-read") {
    Handle& handle = it->second;
    const auto count = static_cast<std::size_t>(arguments.value("count", 4096));
    const std::string chunk =
        handle.data->substr(std::min(handle.position, handle.data->size()), count);
    handle.position += chunk.size();
    json result = {{"count", chunk.size()}, {"eof", handle.position >= handle.data->size()}};
    if (!chunk.empty()) result["buf-b64"] = encode_base64(chunk);
    return reply(FakeAgentReply::ok(result));
  }
  if (command == "guest-file-close") {
    handles.erase(it);
    return reply(FakeAgentReply::ok());
  }
  return reply(
      FakeAgentReply::error("CommandNotFound", "The command " + command + " has not been found"));
}

void FakeAgentServer::Impl::run(std::shared_ptr<const FakeAgentReply> r, std::size_t step) {
  for (; step < r->steps_.size(); ++step) {
    const FakeAgentReply::Step& s = r->steps_[step];
    switch (s.kind) {
      case FakeAgentReply::Step::Kind::delay: {
        auto timer = std::make_shared<asio::steady_timer>(io, s.delay);
        timer->async_wait([this, r, step, timer](const boost::system::error_code& ec) {
          if (!ec) run(r, step + 1);
        });
        return;
      }
      case FakeAgentReply::Step::Kind::bytes:
        queue(s.bytes);
        break;
      case FakeAgentReply::Step::Kind::hang_up:
        if (current) close(current);
        break;
    }
  }
  busy = false;
  pump();
}

void FakeAgentServer::Impl::queue(std::string bytes) {
  if (!current || !current->open) return;  // nobody to tell: QEMU drops it
  current->out.push_back(std::move(bytes));
  if (!current->writing) write_next(current);
}

void FakeAgentServer::Impl::write_next(const std::shared_ptr<Connection>& conn) {
  if (!conn->open || conn->out.empty()) {
    conn->writing = false;
    return;
  }
  conn->writing = true;
  asio::async_write(conn->socket, asio::buffer(conn->out.front()),
                    [this, conn](const boost::system::error_code& ec, std::size_t) {
                      if (!conn->open) return;
                      if (ec) {
                        close(conn);
                        return;
                      }
                      conn->out.pop_front();
                      write_next(conn);
                    });
}

void FakeAgentServer::Impl::close(const std::shared_ptr<Connection>& conn) {
  if (!conn->open) return;
  conn->open = false;
  boost::system::error_code ignored;
  conn->socket.shutdown(Socket::shutdown_both, ignored);
  conn->socket.close(ignored);
  if (current == conn) {
    current.reset();
    // What was not handled yet was the closed connection's; the guest forgets it.
    inputs.clear();
  }
  accept_next();
}

FakeAgentServer::FakeAgentServer() : FakeAgentServer(Options{}) {}

FakeAgentServer::FakeAgentServer(Options options)
    : impl_(std::make_unique<Impl>(std::move(options))) {
  impl_->start();
}

FakeAgentServer::~FakeAgentServer() {
  asio::post(impl_->io, [impl = impl_.get()] { impl->shutdown(); });
  impl_->thread.join();
  std::lock_guard lock(impl_->mutex);
  if (!impl_->expectations.empty()) {
    std::string missing;
    for (const Impl::Expectation& expected : impl_->expectations) {
      missing += (missing.empty() ? "" : ", ") + expected.command;
    }
    ADD_FAILURE() << "FakeAgentServer never received the expected commands: " << missing;
  }
}

const std::filesystem::path& FakeAgentServer::socket_path() const {
  return impl_->path;
}

void FakeAgentServer::expect(std::string command, FakeAgentReply reply) {
  std::lock_guard lock(impl_->mutex);
  impl_->expectations.push_back({std::move(command), std::nullopt,
                                 std::make_shared<const FakeAgentReply>(std::move(reply)),
                                 std::nullopt});
}

void FakeAgentServer::expect(std::string command, json arguments, FakeAgentReply reply) {
  std::lock_guard lock(impl_->mutex);
  impl_->expectations.push_back({std::move(command), std::move(arguments),
                                 std::make_shared<const FakeAgentReply>(std::move(reply)),
                                 std::nullopt});
}

void FakeAgentServer::expect_process(FakeProcess process) {
  std::lock_guard lock(impl_->mutex);
  impl_->expectations.push_back({"guest-exec", std::nullopt, nullptr, std::move(process)});
}

void FakeAgentServer::release() {
  std::lock_guard lock(impl_->mutex);
  impl_->released = true;
}

void FakeAgentServer::write_raw(std::string bytes) {
  asio::post(impl_->io, [impl = impl_.get(), bytes = std::move(bytes)] { impl->queue(bytes); });
}

void FakeAgentServer::hang_up() {
  asio::post(impl_->io, [impl = impl_.get()] {
    if (impl->current) impl->close(impl->current);
  });
}

std::vector<json> FakeAgentServer::received() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->received;
}

std::vector<std::string> FakeAgentServer::commands() const {
  std::vector<std::string> names;
  for (const json& request : received()) names.push_back(request.value("execute", ""));
  return names;
}

int FakeAgentServer::count(const std::string& command) const {
  int n = 0;
  for (const std::string& name : commands()) n += name == command ? 1 : 0;
  return n;
}

int FakeAgentServer::connections() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->connections;
}

std::vector<std::string> FakeAgentServer::files() const {
  std::lock_guard lock(impl_->mutex);
  std::vector<std::string> paths;
  for (const auto& [file, data] : impl_->files) paths.push_back(file);
  return paths;
}

std::size_t FakeAgentServer::open_handles() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->handles.size();
}

}  // namespace qvm::testing
