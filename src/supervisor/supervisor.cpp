#include "supervisor/supervisor.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/signal_set.hpp>
#include <cctype>
#include <boost/asio/steady_timer.hpp>
#include <fstream>
#include <regex>
#include <atomic>
#include <thread>
#include <vector>

#include "cloud_init/seed.hpp"
#include "command_line/command_line.hpp"
#include "process/run_program.hpp"
#include "qvm/agent.hpp"
#include "qvm/qmp.hpp"
#include "store/files.hpp"
#include "store/layout.hpp"
#include "store/log_rotation.hpp"
#include "store/snapshot_meta.hpp"
#include "supervisor/control.hpp"
#include "supervisor/exit_reason.hpp"
#include "supervisor/folder_watch.hpp"
#include "supervisor/io_error.hpp"
#include "supervisor/launch.hpp"
#include "supervisor/log_rotation.hpp"
#include "supervisor/serial_watch.hpp"
#include "supervisor/state_saver.hpp"

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

Environment real_environment(const std::filesystem::path& qemu_cache) {
  Environment env;
  env.probe_host = [qemu_cache](const Profile& profile) {
    if (profile.qemu.user) host::check_qemu_user(*profile.qemu.user, ::geteuid());
    const host::HostNeeds needs{profile.accel != Accel::tcg, profile.firmware == Firmware::uefi};
    return host::probe_host(profile.qemu.binary, needs,
                            [](const auto& argv) { return process::run_program(argv); },
                            host::real_kvm_system(), qemu_cache);
  };
  env.spawn = [](const process::SpawnOptions& options) { return process::Process::spawn(options); };
  env.now = [] { return std::chrono::system_clock::now(); };
  return env;
}

struct Supervisor::Impl {
  enum class Step { none, agent, acpi, quit, sigterm, sigkill };

  Impl(asio::io_context& io, store::VmStore& store, Options options, Environment env)
      : io(io),
        store(store),
        options(std::move(options)),
        env(std::move(env)),
        signals(io, SIGTERM, SIGINT, SIGHUP),
        qmp_timer(io),
        ready_timer(io),
        ladder_timer(io),
        restart_timer(io),
        linger_timer(io) {}

  asio::io_context& io;
  store::VmStore& store;
  Options options;
  Environment env;

  Profile profile;
  RunPaths paths;
  VmStatus status;
  std::optional<store::FileLock> lock;
  std::unique_ptr<ControlServer> control;
  std::unique_ptr<LogRotator> log_rotator;  // caps serial.log and qemu.log (append_event: events.jsonl)
  asio::signal_set signals;

  // The current run of QEMU.
  std::optional<process::Process> qemu;
  std::unique_ptr<process::ExitWatcher> exit_watch;
  std::unique_ptr<QmpClient> qmp;
  std::unique_ptr<SerialWatch> serial_watch;
  std::unique_ptr<FolderWatch> qmp_socket_watch;  // waits for QEMU to create its QMP socket
  asio::steady_timer qmp_timer;
  asio::steady_timer ready_timer;
  Clock::time_point qmp_deadline;
  Clock::time_point run_started;
  std::optional<nlohmann::json> shutdown_event;
  bool panicked = false;
  bool start_reported = false;
  std::optional<std::string> start_error;  // this run failed to start, and why
  bool run_uses_kvm = false;               // this run's QEMU was started with -accel kvm
  std::optional<std::string> kvm_broken;   // accel = "auto": KVM opened, but QEMU died on it

  // The shutdown ladder.
  StopIntent intent = StopIntent::none;
  Step step = Step::none;
  Clock::time_point ladder_started;
  Clock::time_point acpi_deadline;
  asio::steady_timer ladder_timer;
  int acpi_presses = 0;
  std::vector<std::shared_ptr<ControlReply>> waiting;

  // Restarts.
  asio::steady_timer restart_timer;
  int quick_crashes = 0;
  int exit_code = 0;
  bool finished = false;

  // A disk that refuses writes: state.json catches up through the saver.
  std::unique_ptr<StateSaver> saver;
  bool starting_up = false;       // from spawning QEMU until ready (or not ready in time)
  bool start_unrecorded = false;  // this start failed because state.json could not say so
  asio::steady_timer linger_timer;
  std::optional<std::string> io_error_pause;  // BLOCK_IO_ERROR said QEMU stops the VM for it

  // ---- bookkeeping -------------------------------------------------------------------

  // The state.json each save replaces is let go of once the handler that saved has run,
  // after its notify: freeing the file's blocks can wait on the disk (see ReplacedFiles).
  std::shared_ptr<store::ReplacedFiles> replaced_files = std::make_shared<store::ReplacedFiles>();

  // Never throws: a failed write is kept and retried by the saver, and the VM runs on. Only
  // a start cannot go on unrecorded: a QEMU whose pid no file holds is one nobody could
  // find again if this supervisor died, so it is stopped and the start fails.
  bool save() {
    const std::optional<std::string> error = saver->save(status);
    asio::post(io, [files = replaced_files] { files->release(); });
    if (!error) return true;
    if (qemu && starting_up && !attaching && !start_error && intent == StopIntent::none) {
      fail_unrecorded_start(*error);
    }
    return false;
  }

  void write_status(const VmStatus& current) {
    if (env.write_status) return env.write_status(current);
    store.write_status(current, replaced_files.get());
  }

  void fail_unrecorded_start(const std::string& error) {
    starting_up = false;
    start_unrecorded = true;
    start_error = "cannot record the state of VM \"" + options.name + "\": " + error;
    journal("QVM_START_FAILED", {{"error", *start_error}});
    // `qvm up` hears it once QEMU is gone (handle_exit), so that nothing is left running.
    stop_ladder_now();
  }

  void journal(const std::string& event, nlohmann::json data = nlohmann::json::object()) {
    nlohmann::json entry = {{"time", store::format_time(env.now())}, {"event", event}, {"data", std::move(data)}};
    try {
      store.append_event(options.name, entry, profile.logs.max_size);
    } catch (const std::exception&) {
      // A full disk must not take the VM down with it; state.json still tells the truth.
    }
  }

  void notify(nlohmann::json message) {
    if (start_reported || !options.notify) return;
    const std::string phase = message.value("phase", "");
    if (phase == "ready" || phase == "failed") start_reported = true;
    options.notify(message);
  }

  void tell_waiters(const std::string& message) {
    for (auto& reply : waiting) reply->progress(message);
  }

  // ---- start ---------------------------------------------------------------------------

  void take_lock() {
    const fs::path path = store.supervisor_lock(options.name);
    // A supervisor that is exiting may hold it for a moment longer.
    for (int attempt = 0; attempt < 40; ++attempt) {
      lock = store::FileLock::try_acquire(path, "supervisor pid " + std::to_string(::getpid()));
      if (lock) return;
      std::this_thread::sleep_for(milliseconds(50));
    }
    throw Error("VM \"" + options.name + "\" already has a supervisor (" + store::FileLock::holder(path) + ")");
  }

  void clear_runtime_dir() {
    store::make_runtime_dir(paths.runtime_dir);
    for (const auto& file : {paths.supervisor_qmp(), paths.client_qmp(), paths.console_socket(),
                             paths.agent_socket(), paths.qemu_pidfile()}) {
      std::error_code ec;
      fs::remove(file, ec);
    }
  }

  void launch() {
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
    step = Step::none;
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
    starting_up = true;
    save();
    // spawned_at_us against the RESUME event's qemu_time: how long QEMU itself took to start.
    const auto spawned_us =
        std::chrono::duration_cast<std::chrono::microseconds>(spawned_at.time_since_epoch()).count();
    journal("QVM_START", {{"pid", qemu->pid()}, {"argv", command.argv}, {"spawned_at_us", spawned_us}});
    exit_watch = std::make_unique<process::ExitWatcher>(
        io.get_executor(), *qemu, [this](process::ExitStatus exit) { on_qemu_exit(exit); });
    if (start_unrecorded) return;  // QEMU is being killed: its exit ends the start
    qmp_deadline = Clock::now() + options.timings.qmp_connect;
    connect_qmp(serial_offset);
  }

  std::uint64_t qemu_log_offset = 0;

  // After snapshots, a disk runs on its newest overlay, not on the profile's image.
  Profile with_active_images(const Profile& original) const {
    Profile effective = original;
    const store::SnapshotMeta meta = store::read_snapshot_meta(paths.state_dir);
    for (const auto& [disk, image] : meta.active) {
      if (disk >= effective.disks.size()) continue;
      effective.disks[disk].path = image;
      effective.disks[disk].format = DiskFormat::qcow2;
    }
    return effective;
  }

  void connect_qmp(std::uint64_t serial_offset) {
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
        const bool waiting = qemu && !fs::exists(paths.supervisor_qmp(), exists_ec);
        if (waiting && Clock::now() <= qmp_deadline) return false;
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
                         if (attaching) return adopt_running_guest();
                         resume_guest(serial_offset);
                       });
  }

  void resume_guest(std::uint64_t serial_offset) {
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
                         if (!ready_at_qmp() && !save() && start_unrecorded) return;
                         notify({{"phase", "qmp-ready"}, {"pid", status.pid.value_or(0)}});
                         wait_until_ready(serial_offset);
                       });
  }

  // ---- blocking work (the guest agent) off the event loop ---------------------------

  std::vector<std::thread> workers;
  std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);

  // Runs `work` on its own thread and `done(succeeded)` back on the event loop.
  void in_background(std::function<void()> work, std::function<void(bool)> done) {
    workers.emplace_back([this, work = std::move(work), done = std::move(done), flag = cancelled] {
      bool ok = true;
      try {
        work();
      } catch (const std::exception&) {
        ok = false;
      }
      if (!*flag) asio::post(io, [done, ok, flag] {
        if (!*flag) done(ok);
      });
    });
  }

  void join_workers() {
    *cancelled = true;
    for (auto& worker : workers) {
      if (worker.joinable()) worker.join();
    }
    workers.clear();
    cancelled = std::make_shared<std::atomic<bool>>(false);
  }

  // ---- re-attach -------------------------------------------------------------------

  bool attaching = false;

  // The previous supervisor died; QEMU did not. Watch it again, never start a second one.
  void attach(int pid) {
    attaching = true;
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
    run_started = Clock::now();
    qemu_log_offset = size_or_zero(paths.qemu_log());
    status.supervisor_pid = ::getpid();
    status.pid = pid;
    save();
    journal("QVM_REATTACH", {{"pid", pid}});
    exit_watch = std::make_unique<process::ExitWatcher>(
        io.get_executor(), *qemu, [this](process::ExitStatus exit) { on_qemu_exit(exit); });
    qmp_deadline = Clock::now() + options.timings.qmp_connect;
    connect_qmp(size_or_zero(paths.serial_log()));
  }

  // Learns from QEMU what state the guest is in, and finishes a start that was cut short.
  void adopt_running_guest() {
    qmp->async_execute("query-status", nullptr, std::chrono::seconds(10),
                       [this](std::exception_ptr error, nlohmann::json result) {
                         if (error || !qemu) return;
                         const std::string run_state = result.value("status", "");
                         if (run_state == "prelaunch") {
                           // Killed between spawning QEMU and `cont`: finish the start.
                           return resume_guest(size_or_zero(paths.serial_log()));
                         }
                         const bool paused = !result.value("running", false);
                         status.state = paused ? VmState::paused : VmState::running;
                         status.reason = "supervisor re-attached";
                         status.reason_code = "reattached";
                         save();
                         notify({{"phase", "ready"}, {"how", "re-attached"}, {"pid", status.pid.value_or(0)}});
                       });
  }

  // The [ready] conditions still missing; the VM is ready when none is left.
  bool waiting_serial = false;
  bool waiting_agent = false;

  // No [ready] condition beyond QMP answering.
  bool ready_at_qmp() const { return !profile.ready || (!profile.ready->serial && !profile.ready->agent); }

  void wait_until_ready(std::uint64_t serial_offset) {
    if (ready_at_qmp()) return became_ready("QMP ready");
    const std::optional<Ready>& ready = profile.ready;
    const auto timeout = options.ready_timeout.value_or(ready->timeout);
    std::string what;
    if (ready->serial) {
      waiting_serial = true;
      what = "the serial console to match /" + *ready->serial + "/";
      serial_watch = std::make_unique<SerialWatch>(
          io, paths.serial_log(), serial_offset, std::regex(*ready->serial, std::regex::ECMAScript),
          [this](const std::string& matched) {
            waiting_serial = false;
            journal("QVM_READY_SERIAL", {{"matched", matched}});
            if (!waiting_agent) became_ready("serial console matched \"" + matched + "\"");
          });
    }
    if (ready->agent) {
      waiting_agent = true;
      what += std::string(what.empty() ? "" : " and ") + "the guest agent to answer";
      const auto deadline = Clock::now() + timeout;
      in_background(
          [socket = paths.agent_socket(), deadline, flag = cancelled] {
            // The channel accepts connections long before the guest's agent listens.
            while (!*flag && Clock::now() < deadline) {
              try {
                AgentClient agent(socket, std::chrono::seconds(2));
                agent.ping(std::chrono::seconds(2));
                return;
              } catch (const Error&) {
                std::this_thread::sleep_for(std::chrono::milliseconds(200));
              }
            }
            throw Error("the guest agent did not answer");
          },
          [this](bool answered) {
            if (!answered) return;
            waiting_agent = false;
            journal("QVM_READY_AGENT");
            if (!waiting_serial) became_ready("the guest agent answered");
          });
    }
    notify({{"phase", "waiting"}, {"what", what}, {"timeout", timeout.count()}});
    ready_timer.expires_after(timeout);
    ready_timer.async_wait([this, timeout](boost::system::error_code ec) {
      if (ec || status.ready || !qemu) return;
      starting_up = false;
      serial_watch.reset();
      std::string missing = waiting_serial ? "the serial console never matched /" + *profile.ready->serial + "/"
                                           : "the guest agent never answered";
      notify({{"phase", "failed"},
              {"error", "the VM is running but not ready after " + std::to_string(timeout.count()) + " s: " +
                            missing + " (see qvm logs " + options.name + ")"}});
      journal("QVM_NOT_READY", {{"timeout", timeout.count()}});
    });
  }

  void became_ready(const std::string& how) {
    ready_timer.cancel();
    status.ready = true;
    if (!save() && start_unrecorded) return;
    starting_up = false;
    journal("QVM_READY", {{"how", how}});
    notify({{"phase", "ready"}, {"how", how}, {"pid", status.pid.value_or(0)}});
  }

  void start_failed(const std::string& error) {
    starting_up = false;
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

  // ---- events ----------------------------------------------------------------------

  void on_event(const QmpEvent& event) {
    // State first, journal second: whoever sees an event in the journal sees its effect.
    if (event.name == "BLOCK_IO_ERROR") {
      // QEMU sends it just before the STOP it causes (werror=enospc stops on a full disk).
      if (io_error_stops_vm(event.data)) io_error_pause = io_error_reason(event.data);
    } else if (event.name == "STOP") {
      if (status.state == VmState::running) {
        status.state = VmState::paused;
        status.reason = io_error_pause.value_or("paused");
        status.reason_code = io_error_pause ? "io-error" : "paused";
        save();
      }
      io_error_pause.reset();
    } else if (event.name == "RESUME") {
      io_error_pause.reset();
      if (status.state == VmState::paused) {
        status.state = VmState::running;
        status.reason = "resumed";
        status.reason_code = "resumed";
        save();
      }
    } else if (event.name == "SHUTDOWN") {
      shutdown_event = event.data;
    } else if (event.name == "GUEST_PANICKED") {
      panicked = true;
    }
    nlohmann::json entry = {{"time", store::format_time(env.now())},
                            {"event", event.name},
                            {"data", event.data},
                            {"qemu_time", {{"seconds", event.seconds}, {"microseconds", event.microseconds}}}};
    try {
      store.append_event(options.name, entry, profile.logs.max_size);
    } catch (const std::exception&) {
    }
  }

  // ---- exit ------------------------------------------------------------------------

  void on_qemu_exit(process::ExitStatus exit) {
    // Tear down this run's watchers on a fresh stack: we are inside one of their handlers.
    asio::post(io, [this, exit] { handle_exit(exit); });
  }

  void handle_exit(process::ExitStatus exit) {
    join_workers();
    waiting_serial = waiting_agent = false;
    qmp_timer.cancel();
    qmp_socket_watch.reset();
    ready_timer.cancel();
    ladder_timer.cancel();
    serial_watch.reset();
    if (qmp) qmp->close();
    qmp.reset();
    exit_watch.reset();
    qemu.reset();

    ExitReason why = classify_exit(intent, shutdown_event, panicked, exit);
    // accel = "auto" chose KVM because /dev/kvm answered, but QEMU died on it before the
    // guest ran (seen with nested KVM that refuses the host CPU's MSRs): "auto" means the
    // best accelerator that works, so start once more under TCG and say why.
    if (run_uses_kvm && !kvm_broken && profile.accel == Accel::automatic && !status.ready &&
        !start_reported && !start_error && intent == StopIntent::none) {
      const std::string log = store::tail_lines(paths.qemu_log(), 8, qemu_log_offset);
      std::string lower = log;
      std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
      if (lower.find("kvm") != std::string::npos) {
        std::string first = log.substr(0, log.find('\n'));
        if (const auto error = first.find("error: "); error != std::string::npos) first = first.substr(error + 7);
        kvm_broken = "QEMU " + exit.describe() + " on it: " + first;
        journal("QVM_KVM_FALLBACK", {{"status", exit.describe()}, {"log", log}});
        // From a fresh handler, as a restart does: the old run's watchers may still have
        // completions queued.
        restart_timer.expires_after(milliseconds(0));
        restart_timer.async_wait([this](boost::system::error_code ec) {
          if (!ec && !finished) launch();
        });
        return;
      }
    }
    // What `qvm up` is told when QEMU died during the start: sent once state.json says so,
    // so that whatever the user runs next reads the same.
    std::optional<std::string> start_failure;
    if (start_error) {
      why = {VmState::crashed, "start failed: " + *start_error, "start-failed"};
      if (start_unrecorded) start_failure = *start_error;
    } else if (!status.ready && !start_reported && why.reason_code != "host-request" &&
               why.reason_code != "host-kill") {
      std::string log = store::tail_lines(paths.qemu_log(), 8, qemu_log_offset);
      start_failure = "QEMU " + exit.describe() + " during start";
      if (!log.empty()) *start_failure += ":\n" + log;
      why = {VmState::crashed, "start failed: QEMU " + exit.describe(), "start-failed"};
    }
    status.state = why.state;
    status.reason = why.reason;
    status.reason_code = why.reason_code;
    status.pid.reset();
    status.stopped_at = env.now();
    status.exit_code = exit.known && !exit.signaled ? std::optional<int>(exit.code) : std::nullopt;
    status.exit_signal = exit.known && exit.signaled ? std::optional<int>(exit.code) : std::nullopt;
    if (intent == StopIntent::down) status.last_down_step = step_name(step);
    if (intent == StopIntent::kill) status.last_down_step = "sigkill";
    status.ready = false;
    save();
    nlohmann::json data = {{"state", std::string(to_string(status.state))},
                           {"reason", status.reason},
                           {"reason_code", status.reason_code},
                           {"status", exit.describe()}};
    if (intent == StopIntent::down) data["step"] = step_name(step);
    journal("QVM_EXIT", data);
    if (start_failure) notify({{"phase", "failed"}, {"error", *start_failure}});
    // Anyone still waiting for `up` learns it is over.
    notify({{"phase", "failed"}, {"error", "the VM stopped: " + status.reason}});

    const auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - ladder_started);
    for (auto& reply : waiting) {
      nlohmann::json result = {{"ok", true}, {"state", std::string(to_string(status.state))}, {"reason", status.reason}};
      if (intent == StopIntent::down) {
        result["step"] = step_name(step);
        result["elapsed_ms"] = elapsed.count();
      }
      reply->finish(result);
    }
    waiting.clear();

    if (should_restart(why)) return schedule_restart();
    exit_code = status.state == VmState::crashed ? 1 : 0;
    finish();
  }

  bool should_restart(const ExitReason& why) const {
    if (intent != StopIntent::none || why.reason_code == "start-failed") return false;
    switch (profile.shutdown.restart) {
      case RestartPolicy::no: return false;
      case RestartPolicy::on_failure: return why.state == VmState::crashed;
      case RestartPolicy::always: return true;
    }
    return false;
  }

  void schedule_restart() {
    const bool quick = Clock::now() - run_started < options.timings.stable_uptime;
    quick_crashes = quick ? quick_crashes + 1 : 0;
    if (quick_crashes > options.timings.restart_limit) {
      status.reason += " (restart limit reached: " + std::to_string(options.timings.restart_limit) +
                       " quick restarts in a row)";
      save();
      journal("QVM_RESTART_LIMIT", {{"restarts", status.restarts}});
      exit_code = 1;
      return finish();
    }
    const auto delay = options.timings.restart_backoff * (1 << std::min(quick_crashes, 6));
    journal("QVM_RESTART", {{"in_ms", delay.count()}, {"restarts", status.restarts + 1}});
    restart_timer.expires_after(quick ? delay : milliseconds(0));
    restart_timer.async_wait([this](boost::system::error_code ec) {
      if (ec || finished) return;
      ++status.restarts;
      launch();
    });
  }

  void finish() {
    if (finished) return;
    finished = true;
    for (auto& reply : waiting) reply->finish({{"ok", true}, {"state", std::string(to_string(status.state))}});
    waiting.clear();
    qmp_timer.cancel();
    qmp_socket_watch.reset();
    ready_timer.cancel();
    ladder_timer.cancel();
    restart_timer.cancel();
    // QEMU removes its sockets when it exits cleanly, not when it is killed.
    for (const auto& file : {paths.supervisor_qmp(), paths.client_qmp(), paths.console_socket(),
                             paths.agent_socket(), paths.qemu_pidfile()}) {
      std::error_code ec;
      fs::remove(file, ec);
    }
    notify({{"phase", "failed"}, {"error", "the VM stopped: " + status.reason}});
    if (saver->disk_claims_active()) {
      // state.json still says QEMU runs: stay (answering on the control socket) until it
      // says otherwise, so that nobody reads a live VM that is gone; not forever.
      saver->when_caught_up([this] { close_down(); });
      linger_timer.expires_after(options.timings.final_save_wait);
      linger_timer.async_wait([this](boost::system::error_code ec) {
        if (!ec) close_down();
      });
      return;
    }
    close_down();
  }

  void close_down() {
    linger_timer.cancel();
    saver->cancel();
    if (control) control->close();
    boost::system::error_code ignored;
    signals.cancel(ignored);
    io.stop();
  }

  // ---- the shutdown ladder ---------------------------------------------------------

  static std::string step_name(Step s) {
    switch (s) {
      case Step::none: return "";
      case Step::agent: return "agent";
      case Step::acpi: return "acpi";
      case Step::quit: return "quit";
      case Step::sigterm: return "sigterm";
      case Step::sigkill: return "sigkill";
    }
    return "";
  }

  void on_control(const ControlRequest& request, std::shared_ptr<ControlReply> reply) {
    const std::string& op = request.op;
    if (op == "ping") {
      try {
        save();  // rewrites a state.json that was damaged behind our back; else writes nothing
      } catch (const std::exception&) {
        // The answer matters more than the repair; the next save tries again.
      }
      return reply->finish({{"ok", true}, {"supervisor_pid", ::getpid()}, {"pid", status.pid ? nlohmann::json(*status.pid) : nlohmann::json(nullptr)}, {"state", std::string(to_string(status.state))}});
    }
    if (!qemu) {
      return reply->finish({{"ok", true}, {"state", std::string(to_string(status.state))}, {"step", "already stopped"}});
    }
    waiting.push_back(reply);
    if (op == "kill") return kill_now();
    if (auto refused = begin_down(request.force, request.timeout.value_or(profile.shutdown.timeout), true)) {
      waiting.erase(std::find(waiting.begin(), waiting.end(), reply));
      reply->finish({{"ok", false}, {"error", *refused}});
    }
  }

  void kill_now() {
    intent = StopIntent::kill;
    ladder_timer.cancel();
    if (status.state != VmState::stopping) {
      status.state = VmState::stopping;
      status.reason = "killing";
      status.reason_code = "stopping";
      save();
    }
    journal("QVM_KILL");
    if (qemu) qemu->send_signal(SIGKILL);
  }

  // With `refuse_unrecorded`, a down that state.json cannot record is not begun: stopping
  // a guest whose disks may sit on that full disk can lose what it has not written yet, and
  // `qvm kill` is there for whoever wants it stopped anyway. Returns why it was refused.
  std::optional<std::string> begin_down(bool force, std::chrono::seconds timeout, bool refuse_unrecorded = false) {
    restart_timer.cancel();
    if (intent == StopIntent::kill) return std::nullopt;
    if (intent == StopIntent::down) {
      // Already on the ladder; --force skips what is left of the ACPI step.
      if (force && (step == Step::acpi || step == Step::agent)) go_to(Step::quit);
      return std::nullopt;
    }
    const VmStatus before = status;
    intent = StopIntent::down;
    ladder_started = Clock::now();
    status.state = VmState::stopping;
    status.reason = "shutting down";
    status.reason_code = "stopping";
    if (!save() && refuse_unrecorded) {
      const std::string error = saver->last_error();
      intent = StopIntent::none;
      status = before;
      saver->save(status);  // what is still to be written is the state before this down
      journal("QVM_DOWN_REFUSED", {{"error", error}});
      return "cannot shut VM \"" + options.name + "\" down: its state cannot be recorded: " + error +
             "; the VM keeps running (qvm kill " + options.name + " stops it at once)";
    }
    journal("QVM_DOWN", {{"timeout", timeout.count()}, {"force", force}});
    if (force || !qmp || !qmp->connected()) {
      go_to(Step::quit);
      return std::nullopt;
    }
    acpi_deadline = Clock::now() + timeout;
    go_to(profile.agent ? Step::agent : Step::acpi);
    return std::nullopt;
  }

  void go_to(Step next) {
    step = next;
    ladder_timer.cancel();
    journal("QVM_DOWN_STEP", {{"step", step_name(step)}});
    switch (step) {
      case Step::agent:
        // The guest agent shuts the guest down from inside, which works even where ACPI
        // is not handled; if it does not answer, the power button is next.
        tell_waiters("asking the guest agent to shut the guest down");
        return in_background(
            [socket = paths.agent_socket()] {
              AgentClient agent(socket, std::chrono::seconds(3));
              agent.shutdown(AgentShutdownMode::powerdown, std::chrono::seconds(3));
            },
            [this](bool accepted) {
              if (step != Step::agent || !qemu) return;
              if (!accepted) return go_to(Step::acpi);
              ladder_timer.expires_at(acpi_deadline);
              ladder_timer.async_wait([this](boost::system::error_code ec) {
                if (!ec && qemu) go_to(Step::quit);
              });
            });
      case Step::acpi:
        // A paused guest cannot see the power button: let it run so it can shut down.
        if (qmp && qmp->connected()) qmp->async_execute("cont", nullptr, std::chrono::seconds(5), [](auto, auto) {});
        return press_power_button();
      case Step::quit:
        tell_waiters("asking QEMU to quit");
        if (qmp && qmp->connected()) {
          qmp->async_execute("quit", nullptr, std::chrono::seconds(5), [](auto, auto) {});
        }
        return after(options.timings.quit_wait, Step::sigterm);
      case Step::sigterm:
        tell_waiters("sending SIGTERM to QEMU");
        if (qemu) qemu->send_signal(SIGTERM);
        return after(options.timings.term_wait, Step::sigkill);
      case Step::sigkill:
        tell_waiters("sending SIGKILL to QEMU");
        if (qemu) qemu->send_signal(SIGKILL);
        return;
      case Step::none: return;
    }
  }

  void press_power_button() {
    if (step != Step::acpi) return;
    if (Clock::now() >= acpi_deadline) return go_to(Step::quit);
    ++acpi_presses;
    tell_waiters("pressed the ACPI power button" + (acpi_presses > 1 ? " (" + std::to_string(acpi_presses) + ")" : std::string()));
    if (qmp && qmp->connected()) {
      qmp->async_execute("system_powerdown", nullptr, std::chrono::seconds(5), [](auto, auto) {});
    }
    auto next = std::min(Clock::now() + options.timings.acpi_repeat, acpi_deadline);
    ladder_timer.expires_at(next);
    ladder_timer.async_wait([this](boost::system::error_code ec) {
      if (!ec) press_power_button();
    });
  }

  void after(milliseconds wait, Step next) {
    ladder_timer.expires_after(wait);
    ladder_timer.async_wait([this, next](boost::system::error_code ec) {
      if (!ec && qemu) go_to(next);
    });
  }

  // The end of a failed start: nothing may keep running.
  void stop_ladder_now() {
    if (!qemu) return;
    intent = StopIntent::kill;
    qemu->send_signal(SIGKILL);
  }

  void watch_signals() {
    signals.async_wait([this](boost::system::error_code ec, int signal) {
      if (ec) return;
      journal("QVM_SUPERVISOR_SIGNAL", {{"signal", signal}});
      // Waiting for state.json to take the final state: a signal ends the wait.
      if (finished) return close_down();
      // SIGHUP: the terminal went away, which a detached supervisor does not care about.
      if (signal != SIGHUP && qemu) begin_down(false, profile.shutdown.timeout);
      watch_signals();
    });
  }

  int run() {
    take_lock();
    profile = store.load_profile(options.name);
    paths = store.paths(options.name);
    status = store.read_status(options.name).value_or(VmStatus{});
    status.name = options.name;
    if (status.uuid.empty()) status.uuid = profile.uuid.value_or("");
    saver = std::make_unique<StateSaver>(
        io, [this](const VmStatus& current) { write_status(current); },
        [this](const std::string& event, nlohmann::json data) { journal(event, std::move(data)); }, status.state,
        options.timings.save_retry, options.timings.save_retry_max);
    store::make_runtime_dir(paths.runtime_dir);
    control = std::make_unique<ControlServer>(
        io, paths.runtime_dir / "control.sock",
        [this](const ControlRequest& request, std::shared_ptr<ControlReply> reply) { on_control(request, reply); });
    watch_signals();
    log_rotator = std::make_unique<LogRotator>(
        io, paths.state_dir, std::vector{paths.serial_log(), paths.qemu_log()},
        profile.logs.max_size, [this](const std::string& error) { journal("QVM_LOG_ROTATE_FAILED", {{"error", error}}); });
    if (options.attach_pid) {
      attach(*options.attach_pid);
    } else {
      launch();
    }
    // After a finish() that did not wait, io is stopped and run() returns at once.
    io.run();
    join_workers();
    exit_watch.reset();
    qmp.reset();
    serial_watch.reset();
    qmp_socket_watch.reset();
    log_rotator.reset();
    control.reset();
    return exit_code;
  }
};

Supervisor::Supervisor(asio::io_context& io, store::VmStore& store, Options options, Environment environment)
    : impl_(std::make_unique<Impl>(io, store, std::move(options), std::move(environment))) {}

Supervisor::~Supervisor() = default;

int Supervisor::run() { return impl_->run(); }

}  // namespace qvm::supervisor
