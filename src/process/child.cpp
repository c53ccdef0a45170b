#include "process/child.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/process/v2/posix/default_launcher.hpp>
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "host/host_info.hpp"
#include "qvm/error.hpp"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace qvm::process {
namespace asio = boost::asio;
namespace bp = boost::process::v2;
namespace {

// glibc 2.36's <sys/pidfd.h> is not usable from C++ (no extern "C"), so call the kernel.
int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

int pidfd_send_signal(int pidfd, int signal) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0));
}

// The default signal setup, so a child does not inherit its parent's blocked or ignored
// signals (`qvm run` ignores ^C while its guest runs).
void reset_signals() {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD}) ::signal(sig, SIG_DFL);
}

// Moves each {target, fd} of `inherit` onto its target, clearing FD_CLOEXEC there. Every
// source is first copied above all targets, so moving one never overwrites another's
// source. Returns the lowest fd above the targets (the copies sit there; closing them is
// the caller's business), or -1 with errno set.
int place_inherited_fds(const std::vector<std::pair<int, int>>& inherit) {
  int park = 3;
  for (const auto& [target, fd] : inherit) park = std::max(park, target + 1);
  std::vector<int> parked;
  for (const auto& [target, fd] : inherit) {
    const int copy = ::fcntl(fd, F_DUPFD, park);
    if (copy < 0) return -1;
    parked.push_back(copy);
  }
  for (std::size_t i = 0; i < parked.size(); ++i) {
    if (::dup2(parked[i], inherit[i].first) < 0) return -1;
  }
  return park;
}

// Runs in the forked child before exec: a fresh session and the default signal setup, so
// QEMU does not inherit the supervisor's blocked or ignored signals.
struct ChildSetup {
  bool new_session;
  bool die_with_parent;
  pid_t parent;
  int umask_value;  // -1: inherit
  const std::vector<std::pair<int, int>>* inherit;
  boost::system::error_code on_setup(bp::posix::default_launcher& launcher,
                                     const bp::filesystem::path&, const char* const*) {
    for (const auto& [target, fd] : *inherit) launcher.fd_whitelist.push_back(target);
    return {};
  }
  boost::system::error_code on_exec_setup(bp::posix::default_launcher&, const bp::filesystem::path&,
                                          const char* const*) {
    reset_signals();
    // The parked copies are not whitelisted, so the launcher closes them before exec.
    if (place_inherited_fds(*inherit) < 0) {
      return boost::system::error_code(errno, boost::system::system_category());
    }
    if (new_session && ::setsid() < 0) {
      return boost::system::error_code(errno, boost::system::system_category());
    }
    if (umask_value >= 0) ::umask(static_cast<mode_t>(umask_value));
    if (die_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      // The parent may have died between fork and prctl.
      if (::getppid() != parent) ::_exit(1);
    }
    return {};
  }
};

std::string signal_name(int signal) {
  const char* abbrev = sigabbrev_np(signal);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(signal);
}

ExitStatus from_siginfo(const siginfo_t& info) {
  ExitStatus status;
  if (info.si_code == CLD_EXITED) {
    status.code = info.si_status;
  } else {
    status.signaled = true;
    status.code = info.si_status;
  }
  return status;
}

}  // namespace

std::string ExitStatus::describe() const {
  if (!known) return "exited (status unknown: it was not started by this supervisor)";
  if (signaled) return "killed by signal " + std::to_string(code) + " (" + signal_name(code) + ")";
  return "exited with code " + std::to_string(code);
}

Process Process::spawn(const SpawnOptions& options) {
  if (options.argv.empty()) throw Error("cannot start a process with an empty command line");
  std::string exe = options.argv[0];
  if (exe.find('/') == std::string::npos) {
    const char* path = std::getenv("PATH");
    auto found = host::find_program(exe, path ? path : "/usr/bin:/bin");
    if (!found) throw Error("cannot start " + exe + ": not found in PATH");
    exe = found->string();
  }
  int log_fd = -1;
  if (options.log) {
    log_fd = ::open(options.log->c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (log_fd < 0) {
      throw Error("cannot open " + options.log->string() + ": " + std::strerror(errno));
    }
  }
  asio::io_context ctx;
  pid_t pid = -1;
  try {
    std::vector<std::string> args(options.argv.begin() + 1, options.argv.end());
    bp::process child =
        log_fd >= 0 ? bp::process(ctx, exe, args, bp::process_stdio{nullptr, log_fd, log_fd},
                                  ChildSetup{options.new_session, options.die_with_parent, ::getpid(), options.umask ? static_cast<int>(*options.umask) : -1, &options.inherit})
                    : bp::process(ctx, exe, args, bp::process_stdio{nullptr, nullptr, nullptr},
                                  ChildSetup{options.new_session, options.die_with_parent, ::getpid(), options.umask ? static_cast<int>(*options.umask) : -1, &options.inherit});
    pid = child.id();
    child.detach();
  } catch (const std::exception& e) {
    if (log_fd >= 0) ::close(log_fd);
    throw Error("cannot start " + exe + ": " + e.what());
  }
  if (log_fd >= 0) ::close(log_fd);
  // Our unreaped child cannot vanish or be recycled, so this pidfd is the right process.
  int pidfd = pidfd_open(pid);
  if (pidfd < 0) {
    int err = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    throw Error("pidfd_open failed (Linux 5.3 or later is required): " +
                std::string(std::strerror(err)));
  }
  return Process(pid, pidfd, true);
}

std::optional<ProcessFacts> read_process_facts(pid_t pid, const std::filesystem::path& proc) {
  if (pid <= 0) return std::nullopt;
  const std::filesystem::path dir = proc / std::to_string(pid);
  ProcessFacts facts;
  {
    std::ifstream in(dir / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // The command name (field 2) is in parentheses and may itself hold spaces and ')'.
    const auto name_end = stat.rfind(')');
    if (name_end == std::string::npos) return std::nullopt;
    std::istringstream fields(stat.substr(name_end + 1));
    std::string field;
    bool found = false;
    for (int number = 3; fields >> field; ++number) {
      if (number != 22) continue;
      if (field.empty() || field.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
      errno = 0;
      char* end = nullptr;
      facts.start_time = std::strtoull(field.c_str(), &end, 10);
      if (errno != 0) return std::nullopt;
      found = true;
      break;
    }
    if (!found) return std::nullopt;
  }
  {
    std::ifstream in(dir / "status");
    bool found = false;
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("Uid:", 0) != 0) continue;
      std::istringstream ids(line.substr(4));
      unsigned long long real = 0;
      if (!(ids >> real) || real > 0xffffffffULL) return std::nullopt;
      facts.uid = static_cast<unsigned>(real);
      found = true;
      break;
    }
    if (!found) return std::nullopt;
  }
  std::error_code ec;
  facts.exe = std::filesystem::read_symlink(dir / "exe", ec);
  if (ec || facts.exe.empty()) return std::nullopt;
  return facts;
}

std::string read_boot_id(const std::filesystem::path& proc) {
  std::ifstream in(proc / "sys" / "kernel" / "random" / "boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

void retitle(const std::vector<std::string>& argv) {
  std::ifstream in("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields 48 and 49 (arg_start, arg_end) bound the original argv strings in our memory;
  // numbering restarts at 3 after the command name, which may itself contain spaces.
  const auto name_end = stat.rfind(')');
  if (name_end == std::string::npos) return;
  std::istringstream fields(stat.substr(name_end + 1));
  std::string field;
  unsigned long long arg_start = 0, arg_end = 0;
  for (int number = 3; fields >> field && number <= 49; ++number) {
    if (number == 48) arg_start = std::strtoull(field.c_str(), nullptr, 10);
    if (number == 49) arg_end = std::strtoull(field.c_str(), nullptr, 10);
  }
  if (arg_start == 0 || arg_end <= arg_start) return;
  std::string title;
  for (const auto& word : argv) title.append(word).push_back('\0');
  const std::size_t room = arg_end - arg_start;
  title.resize(room, '\0');
  title.back() = '\0';  // a NUL-terminated last word: the kernel then reads no further
  std::memcpy(reinterpret_cast<char*>(arg_start), title.data(), room);
}

bool single_threaded() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("Threads:", 0) == 0) return std::strtol(line.c_str() + 8, nullptr, 10) == 1;
  }
  return false;
}

void fork_detached(const SpawnOptions& options, const std::function<int()>& body) {
  const char* log = options.log ? options.log->c_str() : "/dev/null";
  int log_fd = ::open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (log_fd < 0) throw Error(std::string("cannot open ") + log + ": " + std::strerror(errno));
  pid_t first = ::fork();
  if (first < 0) {
    int err = errno;
    ::close(log_fd);
    throw Error(std::string("fork: ") + std::strerror(err));
  }
  if (first > 0) {
    ::close(log_fd);
    // The first child exits as soon as it has forked the second; reap it.
    int ignored = 0;
    while (::waitpid(first, &ignored, 0) < 0 && errno == EINTR) {
    }
    return;
  }
  // From here on only this copy runs; it must never return into the caller's code.
  if (::setsid() < 0) ::_exit(1);
  if (pid_t second = ::fork(); second != 0) ::_exit(second < 0 ? 1 : 0);
  reset_signals();
  if (options.umask) ::umask(static_cast<mode_t>(*options.umask));
  int null_fd = ::open("/dev/null", O_RDONLY);
  if (null_fd < 0 || ::dup2(null_fd, STDIN_FILENO) < 0 || ::dup2(log_fd, STDOUT_FILENO) < 0 ||
      ::dup2(log_fd, STDERR_FILENO) < 0) {
    ::_exit(127);
  }
  const int park = place_inherited_fds(options.inherit);
  if (park < 0) ::_exit(127);
  for (int fd = 3; fd < park; ++fd) {
    const bool target = std::any_of(options.inherit.begin(), options.inherit.end(),
                                    [fd](const auto& entry) { return entry.first == fd; });
    if (!target) ::close(fd);
  }
  ::close_range(static_cast<unsigned>(park), ~0U, 0);
  int code = 1;
  try {
    code = body();
  } catch (...) {
    // body reports its own failures; an escaped exception must not unwind into the caller.
  }
  ::_exit(code);
}

std::optional<Process> Process::attach(pid_t pid) {
  int pidfd = pidfd_open(pid);
  if (pidfd < 0) return std::nullopt;
  return Process(pid, pidfd, false);
}

Process::Process(Process&& other) noexcept
    : pid_(other.pid_), pidfd_(other.pidfd_), child_(other.child_), status_(other.status_) {
  other.pidfd_ = -1;
}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    if (pidfd_ >= 0) ::close(pidfd_);
    pid_ = other.pid_;
    pidfd_ = other.pidfd_;
    child_ = other.child_;
    status_ = other.status_;
    other.pidfd_ = -1;
  }
  return *this;
}

Process::~Process() {
  if (pidfd_ >= 0) ::close(pidfd_);
}

bool Process::send_signal(int signal) const {
  if (status_ || pidfd_ < 0) return false;
  return pidfd_send_signal(pidfd_, signal) == 0;
}

std::optional<ExitStatus> Process::poll() {
  if (status_) return status_;
  if (child_) {
    siginfo_t info{};
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_), &info,
                 WEXITED | WNOHANG) == 0 &&
        info.si_pid != 0) {
      status_ = from_siginfo(info);
    }
    return status_;
  }
  struct pollfd entry {pidfd_, POLLIN, 0};
  if (::poll(&entry, 1, 0) == 1) {
    status_ = ExitStatus{};
    status_->known = false;
  }
  return status_;
}

std::optional<ExitStatus> Process::wait(int timeout_ms) {
  if (status_) return status_;
  struct pollfd entry {pidfd_, POLLIN, 0};
  int r;
  do {
    r = ::poll(&entry, 1, timeout_ms);
  } while (r < 0 && errno == EINTR);
  if (r <= 0) return std::nullopt;
  return poll();
}

struct ExitWatcher::State {
  asio::posix::stream_descriptor descriptor;
  Process* process;
  std::function<void(ExitStatus)> on_exit;
  State(asio::any_io_executor executor, Process* p, std::function<void(ExitStatus)> f)
      : descriptor(std::move(executor)), process(p), on_exit(std::move(f)) {}
};

ExitWatcher::ExitWatcher(asio::any_io_executor executor, Process& process,
                         std::function<void(ExitStatus)> on_exit)
    : state_(std::make_shared<State>(std::move(executor), &process, std::move(on_exit))) {
  // A duplicate, so that the descriptor object can own and close it.
  int fd = ::fcntl(process.pidfd(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) throw Error("cannot duplicate a pidfd: " + std::string(std::strerror(errno)));
  state_->descriptor.assign(fd);
  std::weak_ptr<State> weak = state_;
  state_->descriptor.async_wait(asio::posix::stream_descriptor::wait_read,
                                [weak](boost::system::error_code ec) {
                                  auto state = weak.lock();
                                  if (ec || !state) return;
                                  auto status = state->process->poll();
                                  state->on_exit(status.value_or(ExitStatus{false, 0, false}));
                                });
}

ExitWatcher::~ExitWatcher() {
  // The handler holds only a weak reference; closing cancels the wait.
  boost::system::error_code ignored;
  state_->descriptor.close(ignored);
}

}  // namespace qvm::process
