#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "host/host_info.hpp"
#include "process/child.hpp"
#include "qvm/profile.hpp"
#include "store/vm_store.hpp"

namespace qvm::supervisor {

/// What the supervisor needs from the world outside; tests pass fakes.
struct Environment {
  std::function<host::HostInfo(const Profile&)> probe_host;
  std::function<process::Process(const process::SpawnOptions&)> spawn;
  std::function<std::chrono::system_clock::time_point()> now;
  /// Writes state.json; empty: the store's own write_status. Tests inject a failing disk.
  std::function<void(const VmStatus&)> write_status;
};

/// Real host probing, real process spawning, the system clock.
/// The real host; a non-empty `qemu_cache` remembers the QEMU probe there.
Environment real_environment(const std::filesystem::path& qemu_cache = {});

/// Timings of the supervisor's waits; tests shorten them.
struct Timings {
  std::chrono::milliseconds qmp_connect{30000};   // QEMU start -> QMP ready
  std::chrono::milliseconds acpi_repeat{5000};    // re-press the power button this often
  std::chrono::milliseconds quit_wait{5000};      // after QMP quit, before SIGTERM
  std::chrono::milliseconds term_wait{5000};      // after SIGTERM, before SIGKILL
  std::chrono::milliseconds restart_backoff{1000};  // doubled after every quick crash
  std::chrono::seconds stable_uptime{60};         // a run this long resets the backoff
  int restart_limit = 5;                          // quick crashes in a row before giving up
  std::chrono::milliseconds save_retry{250};       // first retry of a failed state.json write
  std::chrono::milliseconds save_retry_max{2000};  // doubled up to this
  std::chrono::seconds final_save_wait{600};      // QEMU gone, state.json unwritable: stay this long
};

struct Options {
  std::string name;
  /// Start progress for whoever launched the VM, as JSON objects {"phase": ...}: starting,
  /// warning, qmp-ready, waiting, ready (last), failed (last, with "error").
  std::function<void(const nlohmann::json&)> notify;
  /// Overrides the profile's [ready] timeout (`qvm up --timeout`).
  std::optional<std::chrono::seconds> ready_timeout;
  /// Take over this already running QEMU (its supervisor died) instead of starting one.
  std::optional<int> attach_pid;
  /// QEMU gets SIGKILL when the thread running this supervisor ends (`qvm run`).
  bool qemu_dies_with_supervisor = false;
  Timings timings;
};

/// One VM's life: spawns QEMU, watches it through a pidfd, holds a private QMP monitor,
/// journals every event, keeps state.json true, serves the control socket (down, kill),
/// walks the shutdown ladder and applies the restart policy. Runs on one thread.
class Supervisor {
 public:
  Supervisor(boost::asio::io_context& io, store::VmStore& store, Options options,
             Environment environment);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  /// Runs until QEMU has stopped for good. In attach mode, "ready" is reported once the
  /// running QEMU is watched and its monitor connected again; QEMU is never started twice. Returns 0 when the VM stopped as asked or by
  /// the guest's own choice, 1 when it crashed or failed to start. Throws qvm::Error when
  /// it cannot begin (another supervisor owns the VM, the VM is not defined).
  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qvm::supervisor
