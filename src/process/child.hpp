#pragma once

#include <sys/types.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qvm::process {

/// How a process ended.
struct ExitStatus {
  bool signaled = false;  // killed by a signal rather than exiting
  int code = 0;           // exit code, or the signal number when `signaled`
  bool known = true;      // false: the process was not our child, so its status is lost

  bool success() const { return known && !signaled && code == 0; }
  /// "exited with code 1", "killed by signal 9 (SIGKILL)", "exited (status unknown)".
  std::string describe() const;
  friend bool operator==(const ExitStatus&, const ExitStatus&) = default;
};

/// What to start and where its output goes.
struct SpawnOptions {
  SpawnOptions(std::vector<std::string> command, std::optional<std::filesystem::path> log_file = std::nullopt,
               bool setsid = true, std::vector<std::pair<int, int>> fds = {})
      : argv(std::move(command)), log(std::move(log_file)), new_session(setsid), inherit(std::move(fds)) {}

  std::vector<std::string> argv;            // argv[0]: an absolute path or a name in PATH
  std::optional<std::filesystem::path> log; // stdout and stderr appended here; else /dev/null
  bool new_session = true;                  // setsid(): the terminal's ^C does not reach it
  std::vector<std::pair<int, int>> inherit; // {target, fd}: fd becomes `target` in the child
  bool die_with_parent = false;             // SIGKILL when the spawning thread ends (PR_SET_PDEATHSIG)
  std::optional<unsigned> umask;            // the child's file creation mask
};

/// A process watched through a pidfd, so signals never reach a recycled pid. Not copyable;
/// the process is not killed when this object goes away.
class Process {
 public:
  /// Starts argv (no shell). Throws qvm::Error naming the program when it cannot start.
  static Process spawn(const SpawnOptions& options);
  /// Takes hold of an existing process (not necessarily our child). nullopt if it is gone.
  static std::optional<Process> attach(pid_t pid);

  Process(Process&&) noexcept;
  Process& operator=(Process&&) noexcept;
  ~Process();

  pid_t pid() const { return pid_; }
  int pidfd() const { return pidfd_; }
  bool is_child() const { return child_; }

  /// Sends `signal` through the pidfd; false if the process is already gone.
  bool send_signal(int signal) const;
  /// The exit status if it has ended (reaping it when it is our child), else nullopt.
  std::optional<ExitStatus> poll();
  /// Blocks until it ends, at most `timeout_ms` (-1: forever). nullopt on timeout.
  std::optional<ExitStatus> wait(int timeout_ms = -1);

 private:
  Process(pid_t pid, int pidfd, bool child) : pid_(pid), pidfd_(pidfd), child_(child) {}
  pid_t pid_ = -1;
  int pidfd_ = -1;
  bool child_ = false;
  std::optional<ExitStatus> status_;
};

/// Calls `on_exit` on `executor` once the process ends (pidfd readable), with its status.
/// Cancelled (handler never called) when the watcher is destroyed.
class ExitWatcher {
 public:
  ExitWatcher(boost::asio::any_io_executor executor, Process& process,
              std::function<void(ExitStatus)> on_exit);
  ~ExitWatcher();
  ExitWatcher(const ExitWatcher&) = delete;
  ExitWatcher& operator=(const ExitWatcher&) = delete;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

/// What /proc says about a live process: enough to tell it from a later process that got
/// the same pid (start time) and from one that copied its command line (exe, uid).
struct ProcessFacts {
  std::uint64_t start_time = 0;  // field 22 of /proc/PID/stat: clock ticks after boot
  std::filesystem::path exe;     // the target of /proc/PID/exe
  unsigned uid = 0;              // the real uid (/proc/PID/status)
};

/// Reads the facts of `pid` from `proc` (the procfs mount; a test may pass a tree of its
/// own). nullopt if the process is gone, or if any of them cannot be read (/proc/PID/exe of
/// another user's process, or of a zombie): what cannot be read cannot prove anything.
std::optional<ProcessFacts> read_process_facts(pid_t pid, const std::filesystem::path& proc = "/proc");

/// This boot's id (`proc`/sys/kernel/random/boot_id without its newline); "" if unreadable.
std::string read_boot_id(const std::filesystem::path& proc = "/proc");

/// Makes this process's command line (/proc/self/cmdline, what ps shows) read `argv`,
/// truncated to the room the original command line had, as setproctitle() does.
void retitle(const std::vector<std::string>& argv);

/// True if the calling process runs one thread only, so that fork_detached() is safe.
bool single_threaded();

/// Runs `body` in a detached copy of this process (fork, setsid, fork again: it is nobody's
/// child here and has no terminal) set up as spawn() sets up a program: default signals,
/// stdin on /dev/null, stdout and stderr appended to `options.log` (else /dev/null), the
/// `options.inherit` fds moved to their targets and every other fd closed. The copy exits
/// with body's result and never returns into the caller's code. The caller must be
/// single-threaded; this returns once the copy is detached. `options.argv` is unused.
/// Throws qvm::Error if the log cannot be opened or fork fails.
void fork_detached(const SpawnOptions& options, const std::function<int()>& body);

}  // namespace qvm::process
