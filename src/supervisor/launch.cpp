#include "supervisor/launch.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "process/child.hpp"
#include "process/run_program.hpp"
#include "store/files.hpp"
#include "store/log_rotation.hpp"
#include "snapshot/snapshot.hpp"
#include "supervisor/control.hpp"
#include "supervisor/disks.hpp"
#include "supervisor/supervisor.hpp"

namespace qvm::supervisor {
namespace fs = std::filesystem;

namespace {

fs::path supervisor_binary(const StartOptions& options) {
  if (!options.qvm_binary.empty()) return options.qvm_binary;
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec && self.filename() == "qvm") return self;
  if (const char* env = std::getenv("QVM_BINARY"); env && *env) return env;
#ifdef QVM_INSTALL_BINARY
  return QVM_INSTALL_BINARY;
#else
  return "qvm";
#endif
}

// Reads the supervisor's start report until it says ready or failed.
VmStatus await_start(store::VmStore& store, const std::string& name, int fd,
                     const StartOptions& options, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  std::string buffer;
  for (;;) {
    for (auto newline = buffer.find('\n'); newline != std::string::npos; newline = buffer.find('\n')) {
      auto message = nlohmann::json::parse(buffer.substr(0, newline), nullptr, false);
      buffer.erase(0, newline + 1);
      if (!message.is_object()) continue;
      if (options.on_progress) options.on_progress(message);
      const std::string phase = message.value("phase", "");
      if (phase == "ready") return store.read_status(name).value_or(VmStatus{});
      if (phase == "failed") throw Error(message.value("error", "the VM failed to start"));
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd entry{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&entry, 1, static_cast<int>(left.count())) == 0) {
      throw Error("the supervisor of \"" + name + "\" did not report within " +
                  std::to_string(limit.count()) + " s; see qvm status " + name);
    }
    char chunk[4096];
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string log = store::tail_lines(store.paths(name).supervisor_log(), 5);
      throw Error("the supervisor of \"" + name + "\" exited during start" +
                  (log.empty() ? std::string() : ":\n" + log));
    }
    buffer.append(chunk, static_cast<std::size_t>(n));
  }
}

// The supervisor's start options, as `qvm __supervise` takes them and as it runs them.
struct SuperviseArgs {
  std::optional<std::chrono::seconds> ready_timeout;
  std::optional<int> attach_pid;
};

// The supervisor proper, in a process that is already detached.
int supervise(store::VmStore& store, const std::string& name, int notify_fd,
              const SuperviseArgs& args);

// True when the supervisor program is this very process's program (the qvm CLI) and this
// process runs one thread: forking it then gives the same supervisor as exec'ing a second
// qvm would, about 1.5 ms sooner. Embedders exec qvm, so a supervisor never inherits their
// memory.
bool can_fork_supervisor(const fs::path& binary) {
  std::error_code ec;
  return fs::equivalent(binary, "/proc/self/exe", ec) && !ec && process::single_threaded();
}

// Starts a detached supervisor for `name` and waits for its start report.
VmStatus launch_supervisor(store::VmStore& store, const std::string& name,
                           const SuperviseArgs& args, const StartOptions& options,
                           std::chrono::seconds limit) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw Error(std::string("pipe: ") + std::strerror(errno));
  const fs::path binary = supervisor_binary(options);
  process::SpawnOptions spawn({binary.string(), "--state-dir", store.root().string(), "__supervise",
                               name, "--notify-fd", "3"},
                              store.paths(name).supervisor_log(), true,
                              {{3, pipe_fds[1]}});
  if (args.ready_timeout) {
    spawn.argv.insert(spawn.argv.end(), {"--timeout", std::to_string(args.ready_timeout->count())});
  }
  if (args.attach_pid) {
    spawn.argv.insert(spawn.argv.end(), {"--attach", std::to_string(*args.attach_pid)});
  }
  try {
    if (can_fork_supervisor(binary)) {
      process::fork_detached(spawn, [&] {
        process::retitle(spawn.argv);  // ps shows it as the exec'd supervisor would be
        return supervise(store, name, 3, args);
      });
    } else {
      // `qvm __supervise` forks the real supervisor and exits at once; reap it here.
      process::Process::spawn(spawn).wait(10000);
    }
  } catch (...) {
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    throw;
  }
  ::close(pipe_fds[1]);
  try {
    VmStatus ready = await_start(store, name, pipe_fds[0], options, limit);
    ::close(pipe_fds[0]);
    return ready;
  } catch (...) {
    ::close(pipe_fds[0]);
    throw;
  }
}

}  // namespace

std::optional<QemuIdentity> identify_qemu(int pid, const Profile& profile, const fs::path& proc) {
  auto facts = process::read_process_facts(pid, proc);
  const std::string boot_id = process::read_boot_id(proc);
  if (!facts || boot_id.empty()) return std::nullopt;
  unsigned uid = ::geteuid();
  if (profile.qemu.user) {
    // QEMU drops to this user itself (-runas) once it is set up.
    if (const struct passwd* user = ::getpwnam(profile.qemu.user->c_str())) uid = user->pw_uid;
  }
  return QemuIdentity{facts->start_time, boot_id, facts->exe, uid};
}

bool is_vm_qemu(int pid, const std::optional<QemuIdentity>& identity, const fs::path& proc) {
  if (pid <= 0 || !identity) return false;
  const auto facts = process::read_process_facts(pid, proc);
  if (!facts || facts->start_time != identity->start_time) return false;
  const std::string boot_id = process::read_boot_id(proc);
  if (boot_id.empty() || boot_id != identity->boot_id) return false;
  // A package upgrade replaces the binary under a running QEMU; the kernel then says so.
  if (facts->exe != identity->exe && facts->exe.string() != identity->exe.string() + " (deleted)") return false;
  // Until a [qemu] user QEMU drops its rights it runs as the user who started it.
  return facts->uid == identity->uid || facts->uid == ::geteuid();
}

namespace {

// The VM's state.json cannot be read, but its supervisor holds its lock: it is the one that
// knows, and it rewrites the file from what it keeps in memory.
VmStatus ask_supervisor(const store::VmStore& store, const std::string& name, VmStatus status,
                        const std::string& broken) {
  status.reason_code = "state-unreadable";
  try {
    const auto reply = control_request(store.paths(name).control_socket(), {{"op", "ping"}},
                                       std::chrono::seconds(10));
    const auto state = reply.contains("state") && reply["state"].is_string()
                           ? parse_vm_state(reply["state"].get<std::string>())
                           : std::nullopt;
    status.state = state.value_or(VmState::running);
    if (reply.contains("pid") && reply["pid"].is_number_integer()) status.pid = reply["pid"].get<int>();
    if (reply.contains("supervisor_pid") && reply["supervisor_pid"].is_number_integer()) {
      status.supervisor_pid = reply["supervisor_pid"].get<int>();
    }
    status.reason = broken + "; its supervisor" +
                    (status.supervisor_pid ? " (pid " + std::to_string(*status.supervisor_pid) + ")" : std::string()) +
                    " is alive and rewrites the file";
  } catch (const std::exception& e) {
    status.state = VmState::running;
    status.reason = broken + "; its supervisor is alive (it holds supervisor.lock) but did not answer: " + e.what();
  }
  return status;
}

}  // namespace

VmStatus reconcile_status(const store::VmStore& store, const std::string& name) {
  std::string broken;
  auto status = store.read_status(name, &broken);
  if (!status) throw Error("no VM named \"" + name + "\" (see qvm ls)");
  if (!broken.empty()) {
    if (store.supervisor_alive(name)) return ask_supervisor(store, name, *status, broken);
    return *status;
  }
  if (!is_active(status->state) || store.supervisor_alive(name)) return *status;
  if (status->pid && is_vm_qemu(*status->pid, status->qemu)) {
    // QEMU outlived its supervisor: give it a new one. Whoever holds the operation lock
    // (an `up` in progress) is already looking after it.
    auto lock = store.try_lock_operations(name, "qvm re-attach");
    if (!lock || store.supervisor_alive(name)) return *status;
    try {
      return launch_supervisor(const_cast<store::VmStore&>(store), name,
                               {std::nullopt, *status->pid}, StartOptions{},
                               std::chrono::seconds(60));
    } catch (const std::exception&) {
      // Reporting what is known beats failing a status query; the next command retries.
      return store.read_status(name).value_or(*status);
    }
  }
  const bool unprovable = status->pid && !status->qemu && process::read_process_facts(*status->pid);
  // Both gone without a word: a host reboot, or kill -9 of the supervisor and then QEMU.
  status->state = VmState::crashed;
  status->reason = unprovable
                       ? "the supervisor is gone, and nothing proves that process " + std::to_string(*status->pid) +
                             " is this VM's QEMU (state.json has no qemu_start_time: an older qvm wrote it); "
                             "qvm leaves that process alone"
                       : "the supervisor and QEMU are gone (host reboot or killed together)";
  status->reason_code = "vanished";
  status->pid.reset();
  status->supervisor_pid.reset();
  status->ready = false;
  try {
    store.write_status(*status);
  } catch (const std::exception&) {
    // Reporting the truth matters more than recording it.
  }
  return *status;
}

VmStatus start_vm(store::VmStore& store, const std::string& name, const StartOptions& options) {
  store::FileLock lock = store.lock_operations(name, "qvm up", store::VmStore::LockMode::existing);
  VmStatus status = reconcile_status(store, name);
  if (is_active(status.state)) {
    throw VmStateError("VM \"" + name + "\" is already " + std::string(to_string(status.state)) +
                       (status.pid ? " (QEMU pid " + std::to_string(*status.pid) + ")" : std::string()));
  }
  Profile profile = store.load_profile(name);
  auto run = [](const auto& argv) { return process::run_program(argv); };
  auto created = create_missing_disks(profile, run);
  // A snapshot operation a crash interrupted is finished or undone before QEMU opens the disks.
  snapshot::SnapshotTree(store, name, profile, {run, [] { return std::chrono::system_clock::now(); }, {}, {}, {}})
      .recover();
  record_created_disks(store, name, created);

  if (options.foreground) {
    boost::asio::io_context io;
    Options supervisor_options;
    supervisor_options.name = name;
    supervisor_options.ready_timeout = options.ready_timeout;
    supervisor_options.qemu_dies_with_supervisor = options.die_with_caller;
    supervisor_options.notify = [&](const nlohmann::json& message) {
      if (options.on_progress) options.on_progress(message);
      const std::string phase = message.value("phase", "");
      if (phase == "ready" || phase == "failed") lock.release();
    };
    Supervisor supervisor(io, store, supervisor_options, real_environment(store.qemu_probe_cache()));
    int code = supervisor.run();
    VmStatus final_status = store.read_status(name).value_or(VmStatus{});
    if (code != 0 && final_status.state == VmState::crashed) {
      throw Error("VM \"" + name + "\" " + final_status.reason);
    }
    return final_status;
  }

  // The supervisor enforces every start timeout itself; this only guards against a hang.
  auto ready_limit = options.ready_timeout.value_or(profile.ready ? profile.ready->timeout : std::chrono::seconds(0));
  return launch_supervisor(store, name, {options.ready_timeout, std::nullopt}, options,
                           ready_limit + std::chrono::seconds(90));
}

int run_detached_supervisor(store::VmStore& store, const std::string& name, int notify_fd,
                            std::optional<std::chrono::seconds> ready_timeout, std::optional<int> attach_pid) {
  pid_t child = ::fork();
  if (child < 0) return 1;
  if (child > 0) return 0;
  return supervise(store, name, notify_fd, {ready_timeout, attach_pid});
}

namespace {

int supervise(store::VmStore& store, const std::string& name, int notify_fd,
              const SuperviseArgs& args) {
  // A reader that has gone away (`qvm up` interrupted) must not kill us with SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd >= 0) {
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(null_fd, STDOUT_FILENO);
    ::close(null_fd);
  }
  if (notify_fd >= 0) ::fcntl(notify_fd, F_SETFD, FD_CLOEXEC);
  boost::asio::io_context io;
  Options options;
  options.name = name;
  options.ready_timeout = args.ready_timeout;
  options.attach_pid = args.attach_pid;
  options.notify = [&notify_fd](const nlohmann::json& message) {
    if (notify_fd < 0) return;
    std::string line = message.dump() + "\n";
    ssize_t ignored = ::write(notify_fd, line.data(), line.size());
    (void)ignored;
    const std::string phase = message.value("phase", "");
    if (phase == "ready" || phase == "failed") {
      ::close(notify_fd);
      notify_fd = -1;
    }
  };
  try {
    Supervisor supervisor(io, store, options, real_environment(store.qemu_probe_cache()));
    return supervisor.run();
  } catch (const std::exception& e) {
    std::string line = nlohmann::json{{"phase", "failed"}, {"error", e.what()}}.dump() + "\n";
    if (notify_fd >= 0) {
      ssize_t ignored = ::write(notify_fd, line.data(), line.size());
      (void)ignored;
    }
    std::fprintf(stderr, "qvm supervisor: %s\n", e.what());
    return 1;
  }
}

}  // namespace

}  // namespace qvm::supervisor
