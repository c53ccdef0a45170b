// The baseline of scripts/bench.sh: bare QEMU driven by a minimal blocking QMP client that
// uses none of qvm's code. It starts QEMU with the argv it is given, connects to a QMP
// socket (retrying until QEMU has created it), reads the greeting, sends qmp_capabilities
// and waits for the reply ("QMP ready"). Optionally it then sends `cont`, waits for a text
// in the serial log, presses the ACPI power button and times the guest's shutdown. QEMU is
// killed before it exits, whatever happened.
//
// Usage: bare_qmp --qmp SOCKET [--since-us T] [--cont] [--serial-log FILE --ready TEXT]
//                 [--powerdown] [--qemu-log FILE] [--timeout SECONDS] -- QEMU-ARGV...
//
// Prints one "KEY MICROSECONDS" line per milestone: qmp_ready_us and guest_ready_us count
// from T (CLOCK_REALTIME in microseconds, as bash's $EPOCHREALTIME; default: this
// program's start), qemu_start_us from forking QEMU to QMP ready (QEMU's own share),
// powerdown_us from sending system_powerdown to QEMU's exit.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace qvm::bench {
namespace {

struct Options {
  std::string qmp_socket;
  std::int64_t since_us = 0;
  bool cont = false;
  std::string serial_log;
  std::string ready_text;
  bool powerdown = false;
  std::string qemu_log = "/dev/null";
  int timeout_s = 120;
  std::vector<std::string> argv;
};

std::int64_t realtime_us() {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<std::int64_t>(now.tv_sec) * 1000000 + now.tv_nsec / 1000;
}

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

[[noreturn]] void fail_errno(const std::string& what) { fail(what + ": " + std::strerror(errno)); }

Options parse_options(int argc, char** argv) {
  Options options;
  options.since_us = realtime_us();
  int i = 1;
  auto value = [&](const char* flag) -> std::string {
    if (i + 1 >= argc) fail(std::string(flag) + " needs a value");
    return argv[++i];
  };
  for (; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg == "--qmp") {
      options.qmp_socket = value("--qmp");
    } else if (arg == "--since-us") {
      options.since_us = std::stoll(value("--since-us"));
    } else if (arg == "--cont") {
      options.cont = true;
    } else if (arg == "--serial-log") {
      options.serial_log = value("--serial-log");
    } else if (arg == "--ready") {
      options.ready_text = value("--ready");
    } else if (arg == "--powerdown") {
      options.powerdown = true;
    } else if (arg == "--qemu-log") {
      options.qemu_log = value("--qemu-log");
    } else if (arg == "--timeout") {
      options.timeout_s = std::stoi(value("--timeout"));
    } else {
      fail("unknown option " + arg);
    }
  }
  for (; i < argc; ++i) options.argv.emplace_back(argv[i]);
  if (options.qmp_socket.empty() || options.argv.empty()) fail("usage: bare_qmp --qmp SOCKET [options] -- QEMU-ARGV...");
  if (options.serial_log.empty() != options.ready_text.empty()) fail("--serial-log and --ready go together");
  return options;
}

// QEMU, started with fork + execvp; killed and reaped when this object goes.
class Qemu {
 public:
  Qemu(const std::vector<std::string>& argv, const std::string& log) {
    std::vector<char*> args;
    for (const auto& word : argv) args.push_back(const_cast<char*>(word.c_str()));
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) fail_errno("fork");
    if (pid_ == 0) {
      int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (out >= 0) {
        ::dup2(out, STDOUT_FILENO);
        ::dup2(out, STDERR_FILENO);
      }
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd_ < 0) fail_errno("pidfd_open");
  }
  ~Qemu() {
    if (!exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(pidfd_);
  }
  Qemu(const Qemu&) = delete;
  Qemu& operator=(const Qemu&) = delete;

  // True once QEMU has exited (and is reaped); waits up to `timeout_ms`.
  bool wait_exit(int timeout_ms) {
    if (exited_) return true;
    pollfd entry{pidfd_, POLLIN, 0};
    if (::poll(&entry, 1, timeout_ms) <= 0) return false;
    ::waitpid(pid_, nullptr, 0);
    exited_ = true;
    return true;
  }

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;
  bool exited_ = false;
};

// One QMP connection with blocking, deadline-bounded line reads.
class QmpLine {
 public:
  QmpLine(const std::string& path, Qemu& qemu, std::int64_t deadline_us) : deadline_us_(deadline_us) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof address.sun_path) fail("socket path too long: " + path);
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    for (;;) {
      fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd_ < 0) fail_errno("socket");
      if (::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) return;
      if (errno != ENOENT && errno != ECONNREFUSED) fail_errno("connect " + path);
      ::close(fd_);
      if (qemu.wait_exit(0)) fail("QEMU exited before opening " + path);
      if (realtime_us() > deadline_us_) fail("no QMP socket at " + path);
      ::usleep(1000);
    }
  }
  ~QmpLine() { ::close(fd_); }
  QmpLine(const QmpLine&) = delete;
  QmpLine& operator=(const QmpLine&) = delete;

  std::string read_line() {
    for (;;) {
      if (auto newline = buffer_.find('\n'); newline != std::string::npos) {
        std::string line = buffer_.substr(0, newline);
        buffer_.erase(0, newline + 1);
        return line;
      }
      const std::int64_t left_ms = (deadline_us_ - realtime_us()) / 1000;
      pollfd entry{fd_, POLLIN, 0};
      if (left_ms <= 0 || ::poll(&entry, 1, static_cast<int>(left_ms)) <= 0) fail("QMP timed out");
      char chunk[4096];
      ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail("QMP connection closed");
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  // Sends a command and returns its reply line; events in between are skipped.
  std::string execute(const std::string& command, const std::string& id) {
    std::string request = "{\"execute\":\"" + command + "\",\"id\":\"" + id + "\"}\n";
    if (::write(fd_, request.data(), request.size()) != static_cast<ssize_t>(request.size())) fail_errno("write");
    for (;;) {
      std::string line = read_line();
      if (line.find("\"" + id + "\"") == std::string::npos) continue;
      if (line.find("\"return\"") == std::string::npos) fail(command + " failed: " + line);
      return line;
    }
  }

 private:
  int fd_ = -1;
  std::string buffer_;
  std::int64_t deadline_us_;
};

std::uint64_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

// Waits until `text` appears in `path` beyond `offset`; woken by inotify on its folder.
void wait_for_serial(const std::string& path, std::uint64_t offset, const std::string& text,
                     Qemu& qemu, std::int64_t deadline_us) {
  const std::string folder = path.substr(0, path.rfind('/'));
  int watch = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (watch < 0 || ::inotify_add_watch(watch, folder.c_str(), IN_MODIFY | IN_CREATE) < 0) fail_errno("inotify");
  std::string seen;
  for (;;) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      char chunk[65536];
      ssize_t n;
      while ((n = ::pread(fd, chunk, sizeof chunk, static_cast<off_t>(offset))) > 0) {
        offset += static_cast<std::uint64_t>(n);
        seen.append(chunk, static_cast<std::size_t>(n));
      }
      ::close(fd);
      if (seen.find(text) != std::string::npos) break;
      // Keep enough of the tail for a match that straddles two reads.
      if (seen.size() > text.size()) seen.erase(0, seen.size() - text.size());
    }
    if (qemu.wait_exit(0)) fail("QEMU exited before the guest was ready");
    if (realtime_us() > deadline_us) fail("the serial log never showed \"" + text + "\"");
    pollfd entry{watch, POLLIN, 0};
    if (::poll(&entry, 1, 250) > 0) {
      char events[4096];
      while (::read(watch, events, sizeof events) > 0) {
      }
    }
  }
  ::close(watch);
}

int run(const Options& options) {
  const std::int64_t deadline_us = realtime_us() + std::int64_t{options.timeout_s} * 1000000;
  const std::uint64_t serial_offset = options.serial_log.empty() ? 0 : file_size(options.serial_log);
  Qemu qemu(options.argv, options.qemu_log);
  const std::int64_t spawned = realtime_us();
  QmpLine qmp(options.qmp_socket, qemu, deadline_us);
  if (qmp.read_line().find("\"QMP\"") == std::string::npos) fail("no QMP greeting");
  qmp.execute("qmp_capabilities", "bare-1");
  // qvm's supervisor starts QEMU with -S and sends cont before it reports QMP ready.
  if (options.cont) qmp.execute("cont", "bare-2");
  const std::int64_t ready = realtime_us();
  std::printf("qmp_ready_us %lld\n", static_cast<long long>(ready - options.since_us));
  std::printf("qemu_start_us %lld\n", static_cast<long long>(ready - spawned));
  if (!options.serial_log.empty()) {
    wait_for_serial(options.serial_log, serial_offset, options.ready_text, qemu, deadline_us);
    std::printf("guest_ready_us %lld\n", static_cast<long long>(realtime_us() - options.since_us));
  }
  if (options.powerdown) {
    const std::int64_t pressed = realtime_us();
    qmp.execute("system_powerdown", "bare-3");
    const std::int64_t left_ms = (deadline_us - realtime_us()) / 1000;
    if (!qemu.wait_exit(static_cast<int>(left_ms > 0 ? left_ms : 0))) fail("the guest did not power off");
    std::printf("powerdown_us %lld\n", static_cast<long long>(realtime_us() - pressed));
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace
}  // namespace qvm::bench

int main(int argc, char** argv) {
  try {
    return qvm::bench::run(qvm::bench::parse_options(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bare_qmp: %s\n", e.what());
    return 1;
  }
}
