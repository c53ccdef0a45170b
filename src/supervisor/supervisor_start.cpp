// The supervisor's start side: launching QEMU, connecting its monitor, resuming the guest,
// re-attaching to a QEMU whose supervisor died, and waiting for the [ready] conditions.
#include <unistd.h>

#include <boost/asio/post.hpp>

#include "cloud_init/seed.hpp"
#include "command_line/command_line.hpp"
#include "store/layout.hpp"
#include "store/snapshot_meta.hpp"
#include "supervisor/launch.hpp"
#include "supervisor/supervisor_impl.hpp"

namespace qvm::supervisor {
namespace asio = boost::asio;
namespace fs = std::filesystem;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

namespace {

std::uint64_t size_or_zero(const fs::path& path) {
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  return ec ? 0 : size;
}

}  // namespace

void Supervisor::Impl::clear_runtime_dir() {
  store::make_runtime_dir(paths.runtime_dir);
  remove_runtime_files();
}

void Supervisor::Impl::launch() {
  transition(Phase::launching, {}, {}, false);
  status.state = VmState::starting;
  status.reason = "starting";
  status.reason_code = "starting";
  status.supervisor_pid = ::getpid();
  status.pid.reset();
  status.exit_code.reset();
  status.exit_signal.reset();
  status.ready = false;
  status.started_at = env.now();
  status.stopped_at.reset();
  status.memory_mib = profile.memory_mib;
  status.cpus = profile.cpus;
  status.runtime_dir = paths.runtime_dir;
  status.state_dir = paths.state_dir;
  shutdown_event.reset();
  panicked = false;
  start_error.reset();
  intent = StopIntent::none;
  start_unrecorded = false;
  io_error_pause.reset();
  notify({{"phase", "starting"}});

  CommandLine command;
  try {
    host::HostInfo host = env.probe_host(profile);
    if (kvm_broken && profile.accel == Accel::automatic) {
      host.kvm.usable = false;
      host.kvm.problem = *kvm_broken;
      host.kvm.hint = "set accel = \"kvm\" to see the failure instead";
    }
    command = build_command_line(with_active_images(profile), host, paths, status.uuid);
    clear_runtime_dir();
    if (profile.firmware == Firmware::uefi && !fs::exists(paths.uefi_vars())) {
      fs::copy_file(host.uefi->vars_template, paths.uefi_vars());
      fs::permissions(paths.uefi_vars(), fs::perms::owner_read | fs::perms::owner_write);
    }
    if (profile.cloud_init) cloud_init::write_seed(profile, status.uuid, paths.cloud_init_seed());
  } catch (const std::exception& e) {
    return start_failed(e.what());
  }
  for (const auto& warning : command.warnings) {
    notify({{"phase", "warning"}, {"message", warning}});
    journal("QVM_WARNING", {{"message", warning}});
  }
  const std::uint64_t serial_offset = size_or_zero(paths.serial_log());
  const std::uint64_t log_offset = size_or_zero(paths.qemu_log());
  const auto spawned_at = env.now();  // before the fork, so QEMU's exec counts as QEMU's
  try {
    process::SpawnOptions spawn{command.argv, paths.qemu_log(), true, {}};
    spawn.die_with_parent = options.qemu_dies_with_supervisor;
    // QEMU's sockets, logs and snapshot overlays: read-write for this user only (0600).
    spawn.umask = 0177;
    qemu = env.spawn(spawn);
  } catch (const std::exception& e) {
    return start_failed(e.what());
  }
  qemu_log_offset = log_offset;
  run_started = Clock::now();
  status.pid = qemu->pid();
  status.qemu = identify_qemu(qemu->pid(), profile);  // what proves later it is this QEMU
  status.accel = command.accel == Accel::kvm ? "kvm" : "tcg";
  run_uses_kvm = command.accel == Accel::kvm;
  run_adopted = false;
  transition(Phase::connecting);
  // spawned_at_us against the RESUME event's qemu_time: how long QEMU itself took to start.
  // Journalled even when the save failed: the start's failure follows it in the journal.
  const auto spawned_us =
      std::chrono::duration_cast<std::chrono::microseconds>(spawned_at.time_since_epoch()).count();
  journal("QVM_START", {{"pid", qemu->pid()}, {"argv", command.argv}, {"spawned_at_us", spawned_us}});
  watch_exit();
  if (start_unrecorded) return;  // QEMU is being killed: its exit ends the start
  qmp_deadline = Clock::now() + options.timings.qmp_connect;
  connect_qmp(serial_offset);
}

void Supervisor::Impl::watch_exit() {
  exit_watch = std::make_unique<process::ExitWatcher>(io.get_executor(), *qemu,
                                                      [this](process::ExitStatus exit) { on_qemu_exit(exit); });
}

// After snapshots, a disk runs on its newest overlay, not on the profile's image.
Profile Supervisor::Impl::with_active_images(const Profile& original) const {
  Profile effective = original;
  const store::SnapshotMeta meta = store::read_snapshot_meta(paths.state_dir);
  for (const auto& [disk, image] : meta.active) {
    if (disk >= effective.disks.size()) continue;
    effective.disks[disk].path = image;
    effective.disks[disk].format = DiskFormat::qcow2;
  }
  return effective;
}

void Supervisor::Impl::connect_qmp(std::uint64_t serial_offset) {
  if (!qemu) return;
  if (Clock::now() > qmp_deadline) {
    start_failed("QEMU did not open its QMP socket within " +
                 std::to_string(options.timings.qmp_connect.count() / 1000) + " s");
    return stop_ladder_now();
  }
  std::error_code ec;
  if (!fs::exists(paths.supervisor_qmp(), ec)) {
    // Woken the moment QEMU creates the socket (inotify): a start waits for nothing else.
    auto appeared = [this, serial_offset] {
      std::error_code exists_ec;
      const bool absent = qemu && !fs::exists(paths.supervisor_qmp(), exists_ec);
      if (absent && Clock::now() <= qmp_deadline) return false;
      asio::post(io, [this, serial_offset] { connect_qmp(serial_offset); });
      return true;
    };
    qmp_socket_watch = std::make_unique<FolderWatch>(io, paths.runtime_dir, milliseconds(50), appeared);
    return;
  }
  qmp = std::make_unique<QmpClient>(io.get_executor());
  qmp->subscribe([this](const QmpEvent& event) { on_event(event); });
  qmp->async_connect(paths.supervisor_qmp(), qmp_deadline - Clock::now(),
                     [this, serial_offset](std::exception_ptr error, const QmpGreeting&) {
                       if (error) {
                         if (!qemu) return;
                         // Refused between QEMU's bind() and listen(): microseconds.
                         qmp_timer.expires_after(milliseconds(1));
                         qmp_timer.async_wait([this, serial_offset](boost::system::error_code wait_ec) {
                           if (!wait_ec) connect_qmp(serial_offset);
                         });
                         return;
                       }
                       qmp->on_disconnect([this](const std::string& reason) {
                         journal("QVM_QMP_CLOSED", {{"reason", reason}});
                       });
                       if (run_adopted) return adopt_running_guest();
                       resume_guest(serial_offset);
                     });
}

void Supervisor::Impl::resume_guest(std::uint64_t serial_offset) {
  // A down begun while QEMU was connecting keeps the phase at stopping.
  if (phase == Phase::connecting || phase == Phase::reattaching) transition(Phase::resuming, {}, {}, false);
  qmp->async_execute("cont", nullptr, std::chrono::seconds(30),
                     [this, serial_offset](std::exception_ptr error, nlohmann::json) {
                       if (error) {
                         if (!qemu) return;
                         try {
                           std::rethrow_exception(error);
                         } catch (const std::exception& e) {
                           start_failed(std::string("cannot start the guest CPUs: ") + e.what());
                         }
                         return stop_ladder_now();
                       }
                       if (status.state == VmState::starting) {
                         status.state = VmState::running;
                         status.reason = "started";
                         status.reason_code = "started";
                       }
                       // Ready at QMP: became_ready() saves running and ready in one write.
                       if (!ready_at_qmp()) {
                         const bool saved = phase == Phase::resuming ? transition(Phase::awaiting_ready) : save();
                         if (!saved && start_unrecorded) return;
                       }
                       notify({{"phase", "qmp-ready"}, {"pid", status.pid.value_or(0)}});
                       wait_until_ready(serial_offset);
                     });
}

// ---- re-attach --------------------------------------------------------------------------

// The previous supervisor died; QEMU did not. Watch it again, never start a second one.
void Supervisor::Impl::attach(int pid) {
  std::optional<process::Process> running = process::Process::attach(pid);
  if (!running || !is_vm_qemu(pid, status.qemu)) {
    status.state = VmState::crashed;
    status.reason = "the supervisor and QEMU are gone (host reboot or killed together)";
    status.reason_code = "vanished";
    status.pid.reset();
    status.supervisor_pid.reset();
    save();
    notify({{"phase", "failed"}, {"error", "QEMU (pid " + std::to_string(pid) + ") is gone"}});
    exit_code = 1;
    return finish();
  }
  qemu = std::move(*running);
  run_adopted = true;
  run_started = Clock::now();
  qemu_log_offset = size_or_zero(paths.qemu_log());
  status.supervisor_pid = ::getpid();
  status.pid = pid;
  transition(Phase::reattaching, "QVM_REATTACH", {{"pid", pid}});
  watch_exit();
  qmp_deadline = Clock::now() + options.timings.qmp_connect;
  connect_qmp(size_or_zero(paths.serial_log()));
}

// Learns from QEMU what state the guest is in, and finishes a start that was cut short.
void Supervisor::Impl::adopt_running_guest() {
  qmp->async_execute("query-status", nullptr, std::chrono::seconds(10),
                     [this](std::exception_ptr error, nlohmann::json result) {
                       if (error || !qemu || phase != Phase::reattaching) return;
                       const std::string run_state = result.value("status", "");
                       if (run_state == "prelaunch") {
                         // Killed between spawning QEMU and `cont`: finish the start.
                         return resume_guest(size_or_zero(paths.serial_log()));
                       }
                       const bool paused = !result.value("running", false);
                       status.state = paused ? VmState::paused : VmState::running;
                       status.reason = "supervisor re-attached";
                       status.reason_code = "reattached";
                       transition(Phase::running);
                       notify({{"phase", "ready"}, {"how", "re-attached"}, {"pid", status.pid.value_or(0)}});
                     });
}

// ---- readiness --------------------------------------------------------------------------

// No [ready] condition beyond QMP answering.
bool Supervisor::Impl::ready_at_qmp() const {
  return !profile.ready || (!profile.ready->serial && !profile.ready->agent);
}

void Supervisor::Impl::wait_until_ready(std::uint64_t serial_offset) {
  if (ready_at_qmp()) return became_ready("QMP ready");
  const auto timeout = options.ready_timeout.value_or(profile.ready->timeout);
  ReadyConditions conditions{profile.ready->serial, profile.ready->agent, timeout,
                             paths.serial_log(),    serial_offset,        paths.agent_socket()};
  ReadyCallbacks callbacks;
  callbacks.serial_matched = [this](const std::string& matched) {
    journal("QVM_READY_SERIAL", {{"matched", matched}});
  };
  callbacks.agent_answered = [this] { journal("QVM_READY_AGENT"); };
  callbacks.ready = [this](const std::string& how) { became_ready(how); };
  callbacks.timed_out = [this, timeout](const std::string& missing) {
    if (status.ready || !qemu) return;
    if (phase == Phase::awaiting_ready) transition(Phase::running, {}, {}, false);
    notify({{"phase", "failed"},
            {"error", "the VM is running but not ready after " + std::to_string(timeout.count()) + " s: " + missing +
                          " (see qvm logs " + options.name + ")"}});
    journal("QVM_NOT_READY", {{"timeout", timeout.count()}});
  };
  readiness = std::make_unique<Readiness>(io, std::move(conditions), std::move(callbacks));
  notify({{"phase", "waiting"}, {"what", readiness->what()}, {"timeout", timeout.count()}});
}

void Supervisor::Impl::became_ready(const std::string& how) {
  status.ready = true;
  if (is_starting(phase)) {
    if (!transition(Phase::running, "QVM_READY", {{"how", how}}) && start_unrecorded) return;
  } else {
    // A down begun meanwhile keeps the VM stopping; that it was ready is still recorded.
    if (!save() && start_unrecorded) return;
    journal("QVM_READY", {{"how", how}});
  }
  notify({{"phase", "ready"}, {"how", how}, {"pid", status.pid.value_or(0)}});
}

void Supervisor::Impl::start_failed(const std::string& error) {
  journal("QVM_START_FAILED", {{"error", error}});
  start_error = error;
  if (!qemu) {
    status.state = VmState::stopped;
    status.reason = "start failed: " + error;
    status.reason_code = "start-failed";
    status.pid.reset();
    status.stopped_at = env.now();
    save();
    exit_code = 1;
    notify({{"phase", "failed"}, {"error", error}});
    finish();
    return;
  }
  notify({{"phase", "failed"}, {"error", error}});
}

}  // namespace qvm::supervisor
