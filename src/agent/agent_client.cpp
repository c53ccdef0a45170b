#include <algorithm>
#include <cstdio>
#include <deque>
#include <random>
#include <thread>

#include "agent/agent_channel.hpp"
#include "agent/agent_text.hpp"
#include "qmp/qmp_text.hpp"
#include "qvm/agent.hpp"
#include "qvm/qmp.hpp"

namespace qvm {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using agent::AgentChannel;
using std::chrono::milliseconds;

constexpr char kDelimiter = '\xff';
// Per guest-file-read; qemu-ga allocates the buffer up front, so not much more than this.
constexpr int kReadCount = 64 * 1024;
// Reads per stream and poll while the command runs, so that a chatty command cannot starve the
// other stream or the exit check.
constexpr int kReadsPerPoll = 16;
// The first status polls come quickly (most commands take milliseconds), later ones at
// the caller's interval.
constexpr milliseconds kFirstPoll{10};
// Cleanup after a failure gets this much time per request, whatever the caller's deadline was.
constexpr milliseconds kCleanupTimeout{1000};

Clock::time_point deadline_after(milliseconds timeout) {
  const Clock::time_point now = Clock::now();
  if (timeout > Clock::time_point::max() - now) return Clock::time_point::max();
  return now + timeout;
}

std::string describe(const std::vector<std::string>& argv) {
  std::string text;
  for (const std::string& word : argv) {
    if (!text.empty()) text += ' ';
    text += word;
  }
  return qmp::excerpt(text);
}

}  // namespace

AgentError::AgentError(std::string command, std::string error_class, std::string desc)
    : Error("guest agent command \"" + command + "\" failed: " + error_class + ": " + desc),
      command_(std::move(command)),
      class_(std::move(error_class)),
      desc_(std::move(desc)) {}

std::string_view to_string(AgentShutdownMode mode) {
  switch (mode) {
    case AgentShutdownMode::powerdown:
      return "powerdown";
    case AgentShutdownMode::reboot:
      return "reboot";
    case AgentShutdownMode::halt:
      return "halt";
  }
  return "powerdown";
}

struct AgentClient::Impl {
  Impl(const std::filesystem::path& socket, milliseconds connect_timeout);

  void sync(Clock::time_point deadline, milliseconds timeout);
  json request(const std::string& command, const json& arguments, milliseconds timeout);
  json request(const std::string& command, const json& arguments, Clock::time_point deadline,
               milliseconds timeout);
  void send(const std::string& command, const json& arguments, Clock::time_point deadline);
  json read_reply(const std::string& command, Clock::time_point deadline);
  std::string next_line(Clock::time_point deadline, std::string_view what);
  [[noreturn]] void disconnect(const std::string& reason);
  void check_connected() const;
  std::int64_t start_process(const json& arguments, Clock::time_point deadline,
                             milliseconds timeout, const std::vector<std::string>& argv);
  json status(std::int64_t pid, Clock::time_point deadline, milliseconds timeout,
              const std::vector<std::string>& argv);
  std::string decode(const json& status, const char* member, const char* command);
  std::optional<AgentExecResult> exec_result(const json& status);
  void pause(milliseconds& interval, milliseconds limit, Clock::time_point deadline);

  std::filesystem::path path;
  std::unique_ptr<AgentChannel> channel;
  QmpFramer framer;
  std::deque<std::string> lines;  // complete lines received and not consumed yet
  bool synced = false;
  std::string end_reason;
  std::mt19937_64 random{std::random_device{}()};
};

AgentClient::Impl::Impl(const std::filesystem::path& socket, milliseconds connect_timeout)
    : path(socket) {
  const Clock::time_point deadline = deadline_after(connect_timeout);
  channel = std::make_unique<AgentChannel>(socket, deadline);
  sync(deadline, connect_timeout);
}

void AgentClient::Impl::check_connected() const {
  if (!channel) throw AgentDisconnected("the guest agent session is over: " + end_reason);
}

void AgentClient::Impl::disconnect(const std::string& reason) {
  if (channel) channel->close();
  channel.reset();
  end_reason = reason;
  throw AgentDisconnected(reason);
}

// guest-sync-delimited: the 0xFF we send first makes the agent drop any partial request it
// holds; the 0xFF it sends before its reply marks where the bytes meant for this session begin.
// Until the reply with our id, everything is skipped: stale replies of earlier sessions or of
// requests that timed out, the agent's error about our 0xFF, garbage, partial lines.
void AgentClient::Impl::sync(Clock::time_point deadline, milliseconds timeout) {
  check_connected();
  synced = false;
  lines.clear();
  framer = QmpFramer();
  const auto id = static_cast<std::int64_t>(random() % 0x7fffffffu) + 1;
  const std::string request =
      std::string(1, kDelimiter) +
      json{{"execute", "guest-sync-delimited"}, {"arguments", {{"id", id}}}}.dump() + "\n";
  agent::SyncReplyScanner scanner(id);
  try {
    channel->write(request, deadline, "guest-sync-delimited");
    for (;;) {
      const std::string bytes = channel->read_some(deadline, "guest-sync-delimited");
      if (const std::optional<std::size_t> taken = scanner.scan(bytes)) {
        synced = true;
        for (std::string& line : framer.feed(std::string_view(bytes).substr(*taken))) {
          lines.push_back(std::move(line));
        }
        return;
      }
    }
  } catch (const AgentTimeout&) {
    throw AgentTimeout("the guest agent on " + path.string() +
                       " did not answer guest-sync-delimited within " +
                       qmp::format_duration(timeout) +
                       " (is qemu-ga running in the guest, and has the guest finished booting?)");
  } catch (const AgentDisconnected& e) {
    disconnect(e.what());
  } catch (const QmpDisconnected&) {
    disconnect("protocol error: a guest agent reply exceeded 16 MiB");
  }
}

std::string AgentClient::Impl::next_line(Clock::time_point deadline, std::string_view what) {
  while (lines.empty()) {
    const std::string bytes = channel->read_some(deadline, what);
    std::vector<std::string> complete;
    try {
      complete = framer.feed(bytes);
    } catch (const QmpDisconnected&) {
      disconnect("protocol error: the guest agent's reply to " + std::string(what) +
                 " exceeded 16 MiB");
    }
    for (std::string& line : complete) lines.push_back(std::move(line));
  }
  std::string line = std::move(lines.front());
  lines.pop_front();
  return line;
}

void AgentClient::Impl::send(const std::string& command, const json& arguments,
                             Clock::time_point deadline) {
  json request = {{"execute", command}};
  if (!arguments.is_null() && !(arguments.is_object() && arguments.empty())) {
    request["arguments"] = arguments;
  }
  // Replace rather than throw on invalid UTF-8 in a caller's string; the agent would refuse it.
  channel->write(request.dump(-1, ' ', false, json::error_handler_t::replace) + "\n", deadline,
                 command);
}

json AgentClient::Impl::read_reply(const std::string& command, Clock::time_point deadline) {
  for (;;) {
    const std::string line = next_line(deadline, command);
    QmpMessage message;
    try {
      message = parse_qmp_message(line);
    } catch (const QmpDisconnected& e) {
      disconnect(std::string(e.what()) + " (the guest agent's reply to " + command + ")");
    }
    switch (message.kind) {
      case QmpMessage::Kind::success:
        return std::move(message.value);
      case QmpMessage::Kind::error:
        throw AgentError(command, message.value["class"].get<std::string>(),
                         message.value["desc"].get<std::string>());
      case QmpMessage::Kind::event:
      case QmpMessage::Kind::greeting:
        break;  // not from qemu-ga; nothing to answer
    }
  }
}

json AgentClient::Impl::request(const std::string& command, const json& arguments,
                                milliseconds timeout) {
  return request(command, arguments, deadline_after(timeout), timeout);
}

// `timeout` only words the error; `deadline` is what counts.
json AgentClient::Impl::request(const std::string& command, const json& arguments,
                                Clock::time_point deadline, milliseconds timeout) {
  check_connected();
  if (!synced) sync(deadline, timeout);
  try {
    send(command, arguments, deadline);
    return read_reply(command, deadline);
  } catch (const AgentTimeout&) {
    // A late reply must not be taken for the next command's: resynchronise before that one.
    synced = false;
    throw AgentTimeout("the guest agent on " + path.string() + " did not answer " + command +
                       " within " + qmp::format_duration(timeout));
  } catch (const AgentDisconnected& e) {
    if (channel) disconnect(e.what());  // a socket error: the channel reported it, not us
    throw;
  }
}

void AgentClient::Impl::pause(milliseconds& interval, milliseconds limit,
                              Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  std::this_thread::sleep_for(
      std::clamp(interval, milliseconds(0), std::max(left, milliseconds(0))));
  interval = std::min(interval * 2, std::max(limit, kFirstPoll));
}

std::int64_t AgentClient::Impl::start_process(const json& arguments, Clock::time_point deadline,
                                              milliseconds timeout,
                                              const std::vector<std::string>& argv) {
  const json started = request("guest-exec", arguments, deadline, timeout);
  const auto pid = started.find("pid");
  if (!started.is_object() || pid == started.end() || !pid->is_number_integer()) {
    disconnect("protocol error: guest-exec returned no pid for " + describe(argv) + ": " +
               qmp::excerpt(started.dump()));
  }
  return pid->get<std::int64_t>();
}

// guest-exec-status, with the deadline of the whole command: running out of time while
// polling means the command did not finish in time, whichever request was waiting then.
json AgentClient::Impl::status(std::int64_t pid, Clock::time_point deadline, milliseconds timeout,
                               const std::vector<std::string>& argv) {
  try {
    if (Clock::now() >= deadline) throw AgentTimeout("");
    return request("guest-exec-status", {{"pid", pid}}, deadline, timeout);
  } catch (const AgentTimeout&) {
    throw AgentTimeout("the guest command " + describe(argv) + " (pid " + std::to_string(pid) +
                       ") did not finish within " + qmp::format_duration(timeout) +
                       "; it goes on running in the guest");
  }
}

std::string AgentClient::Impl::decode(const json& reply, const char* member, const char* command) {
  const auto it = reply.find(member);
  if (it == reply.end() || it->is_null()) return {};
  std::optional<std::string> bytes;
  if (it->is_string()) bytes = agent::base64_decode(it->get_ref<const std::string&>());
  if (!bytes) {
    disconnect(std::string("protocol error: ") + command + " returned a \"" + member +
               "\" that is not base64");
  }
  return std::move(*bytes);
}

std::optional<AgentExecResult> AgentClient::Impl::exec_result(const json& status) {
  try {
    return agent::parse_exec_status(status);
  } catch (const AgentDisconnected& e) {
    disconnect(e.what());
  }
}

AgentClient::AgentClient(const std::filesystem::path& socket, milliseconds connect_timeout)
    : impl_(std::make_unique<Impl>(socket, connect_timeout)) {}

AgentClient::~AgentClient() = default;
AgentClient::AgentClient(AgentClient&&) noexcept = default;
AgentClient& AgentClient::operator=(AgentClient&&) noexcept = default;

const std::filesystem::path& AgentClient::socket() const {
  return impl_->path;
}

void AgentClient::sync(milliseconds timeout) {
  impl_->sync(deadline_after(timeout), timeout);
}

void AgentClient::ping(milliseconds timeout) {
  impl_->request("guest-ping", json::object(), timeout);
}

json AgentClient::info(milliseconds timeout) {
  return impl_->request("guest-info", json::object(), timeout);
}

json AgentClient::execute(const std::string& command, const json& arguments, milliseconds timeout) {
  return impl_->request(command, arguments, timeout);
}

AgentExecResult AgentClient::exec(const std::vector<std::string>& argv,
                                  const AgentExecOptions& options) {
  if (argv.empty()) throw UsageError("guest agent exec needs a command to run");
  const Clock::time_point deadline = deadline_after(options.timeout);
  json arguments = {{"path", argv.front()},
                    {"arg", std::vector<std::string>(argv.begin() + 1, argv.end())},
                    {"capture-output", true}};
  if (options.input) arguments["input-data"] = agent::base64_encode(*options.input);
  if (!options.env.empty()) arguments["env"] = options.env;
  const std::int64_t pid = impl_->start_process(arguments, deadline, options.timeout, argv);

  milliseconds interval = kFirstPoll;
  for (;;) {
    const json status = impl_->status(pid, deadline, options.timeout, argv);
    if (std::optional<AgentExecResult> result = impl_->exec_result(status)) {
      return std::move(*result);
    }
    impl_->pause(interval, options.poll_interval, deadline);
  }
}

int AgentClient::exec_streaming(const std::vector<std::string>& argv,
                                const OutputHandler& on_stdout, const OutputHandler& on_stderr,
                                milliseconds timeout) {
  if (argv.empty()) throw UsageError("guest agent exec needs a command to run");
  Impl& impl = *impl_;
  const Clock::time_point deadline = deadline_after(timeout);
  char name[64];
  std::snprintf(name, sizeof name, "/tmp/qvm-exec-%016llx",
                static_cast<unsigned long long>(impl.random()));
  const std::string out_path = std::string(name) + ".out";
  const std::string err_path = std::string(name) + ".err";

  struct Stream {
    const std::string* path;
    const OutputHandler* handler;
    std::optional<std::int64_t> handle;
  };
  Stream streams[2] = {{&out_path, &on_stdout, std::nullopt},
                       {&err_path, &on_stderr, std::nullopt}};
  bool started = false;

  // Whatever happens, give the agent its handles back and leave no files behind (once the
  // command runs, it has unlinked them itself). Best effort, on a short leash.
  const auto clean_up = [&] {
    if (!impl.channel) return;
    for (Stream& stream : streams) {
      if (!stream.handle) continue;
      try {
        impl.request("guest-file-close", {{"handle", *stream.handle}}, kCleanupTimeout);
      } catch (const Error&) {
      }
      stream.handle.reset();
    }
    if (!started) {
      try {
        impl.request("guest-exec", {{"path", "rm"}, {"arg", {"-f", "--", out_path, err_path}}},
                     kCleanupTimeout);
      } catch (const Error&) {
      }
    }
  };
  // Returns false once a read finds nothing more (for now).
  const auto read_chunk = [&](Stream& stream) {
    const json chunk = impl.request(
        "guest-file-read", {{"handle", *stream.handle}, {"count", kReadCount}}, deadline, timeout);
    const std::string bytes = impl.decode(chunk, "buf-b64", "guest-file-read");
    if (!bytes.empty() && *stream.handler) (*stream.handler)(bytes);
    return !bytes.empty();
  };

  try {
    // The files exist before the command starts, opened by us: the shell's redirections then
    // write into the very files we read, and can unlink them at once.
    for (Stream& stream : streams) {
      const json handle = impl.request("guest-file-open", {{"path", *stream.path}, {"mode", "w+"}},
                                       deadline, timeout);
      if (!handle.is_number_integer()) {
        impl.disconnect("protocol error: guest-file-open returned no handle: " +
                        qmp::excerpt(handle.dump()));
      }
      stream.handle = handle.get<std::int64_t>();
    }
    const json arguments = {{"path", "/bin/sh"},
                            {"arg", {"-c", agent::streaming_script(argv, out_path, err_path)}}};
    const std::int64_t pid = impl.start_process(arguments, deadline, timeout, argv);
    started = true;

    milliseconds interval = kFirstPoll;
    for (;;) {
      // Status first: once it says exited, everything the command wrote is in the files.
      const json status = impl.status(pid, deadline, timeout, argv);
      const std::optional<AgentExecResult> result = impl.exec_result(status);
      const bool exited = result.has_value();
      for (Stream& stream : streams) {
        for (int reads = 0; exited || reads < kReadsPerPoll; ++reads) {
          if (!read_chunk(stream)) break;
        }
      }
      if (exited) {
        clean_up();
        return result->exit_code;
      }
      impl.pause(interval, milliseconds(100), deadline);
    }
  } catch (...) {
    clean_up();
    throw;
  }
}

void AgentClient::shutdown(AgentShutdownMode mode, milliseconds timeout) {
  Impl& impl = *impl_;
  const Clock::time_point deadline = deadline_after(timeout);
  const std::string command = "guest-shutdown";
  impl.check_connected();
  // Not being able to ask is a failure; only silence after asking means yes.
  if (!impl.synced) impl.sync(deadline, timeout);
  try {
    impl.send(command, {{"mode", to_string(mode)}}, deadline);
  } catch (const AgentTimeout&) {
    impl.synced = false;
    throw AgentTimeout("could not send guest-shutdown to the guest agent on " + impl.path.string() +
                       " within " + qmp::format_duration(timeout));
  } catch (const AgentDisconnected& e) {
    impl.disconnect(e.what());
  }
  try {
    impl.read_reply(command, deadline);
  } catch (const AgentTimeout&) {
    impl.synced = false;
  } catch (const AgentDisconnected& e) {
    // QEMU exited with the guest (powerdown, or halt on a machine that stops), which is the
    // shutdown we asked for.
    if (impl.channel) impl.channel->close();
    impl.channel.reset();
    impl.end_reason = e.what();
  }
}

}  // namespace qvm
