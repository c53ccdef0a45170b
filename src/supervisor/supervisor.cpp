#include "supervisor/supervisor.hpp"

#include <signal.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <stdexcept>
#include <thread>

#include "process/run_program.hpp"
#include "store/layout.hpp"
#include "supervisor/io_error.hpp"
#include "supervisor/supervisor_impl.hpp"

namespace qvm::supervisor {
namespace asio = boost::asio;
namespace fs = std::filesystem;
using std::chrono::milliseconds;


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

Supervisor::Impl::Impl(asio::io_context& io, store::VmStore& store, Options options, Environment env)
    : io(io),
      store(store),
      options(std::move(options)),
      env(std::move(env)),
      signals(io, SIGTERM, SIGINT, SIGHUP),
      qmp_timer(io),
      ladder_timer(io),
      ladder(ladder_timer, ladder_actions(),
             {this->options.timings.acpi_repeat, this->options.timings.quit_wait, this->options.timings.term_wait}),
      ladder_agent(io),
      restart_timer(io),
      linger_timer(io) {}

// ---- bookkeeping ------------------------------------------------------------------------

bool Supervisor::Impl::transition(Phase to, const std::string& event, nlohmann::json data, bool save_status) {
  const Phase from = phase;
  if (!transition_allowed(from, to)) {
    throw std::logic_error("supervisor of VM \"" + options.name + "\": no transition from " +
                           std::string(to_string(from)) + " to " + std::string(to_string(to)));
  }
  phase = to;
  // A failed save is judged by the phase being left: the start it belongs to is undone.
  const bool saved = !save_status || save(from);
  if (!event.empty() && (saved || !start_unrecorded)) journal(event, std::move(data));
  return saved;
}

// Never throws: a failed write is kept and retried by the saver, and the VM runs on. Only
// a start cannot go on unrecorded: a QEMU whose pid no file holds is one nobody could
// find again if this supervisor died, so it is stopped and the start fails.
bool Supervisor::Impl::save(Phase judged) {
  const std::optional<std::string> error = saver->save(status);
  asio::post(io, [files = replaced_files] { files->release(); });
  if (!error) return true;
  if (qemu && is_starting(judged) && !options.attach_pid && !start_error && intent == StopIntent::none) {
    fail_unrecorded_start(*error);
  }
  return false;
}

void Supervisor::Impl::write_status(const VmStatus& current) {
  if (env.write_status) return env.write_status(current);
  store.write_status(current, replaced_files.get());
}

void Supervisor::Impl::fail_unrecorded_start(const std::string& error) {
  start_unrecorded = true;
  start_error = "cannot record the state of VM \"" + options.name + "\": " + error;
  journal("QVM_START_FAILED", {{"error", *start_error}});
  // `qvm up` hears it once QEMU is gone (handle_exit), so that nothing is left running.
  stop_ladder_now();
}

void Supervisor::Impl::journal(const std::string& event, nlohmann::json data) {
  nlohmann::json entry = {{"time", store::format_time(env.now())}, {"event", event}, {"data", std::move(data)}};
  try {
    store.append_event(options.name, entry, profile.logs.max_size);
  } catch (const std::exception&) {
    // A full disk must not take the VM down with it; state.json still tells the truth.
  }
}

void Supervisor::Impl::notify(nlohmann::json message) {
  if (start_reported || !options.notify) return;
  const std::string reported = message.value("phase", "");
  if (reported == "ready" || reported == "failed") start_reported = true;
  options.notify(message);
}

// ---- start ------------------------------------------------------------------------------

void Supervisor::Impl::take_lock() {
  const fs::path path = store.supervisor_lock(options.name);
  // A supervisor that is exiting may hold it for a moment longer.
  for (int attempt = 0; attempt < 40; ++attempt) {
    lock = store::FileLock::try_acquire(path, "supervisor pid " + std::to_string(::getpid()));
    if (lock) return;
    std::this_thread::sleep_for(milliseconds(50));
  }
  throw Error("VM \"" + options.name + "\" already has a supervisor (" + store::FileLock::holder(path) + ")");
}


// ---- events -----------------------------------------------------------------------------

void Supervisor::Impl::on_event(const QmpEvent& event) {
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

// ---- the loop ---------------------------------------------------------------------------

int Supervisor::Impl::run() {
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
      io, paths.control_socket(),
      [this](const ControlRequest& request, std::shared_ptr<ControlReply> reply) { on_control(request, reply); });
  watch_signals();
  log_rotator = std::make_unique<LogRotator>(
      io, paths.state_dir, std::vector{paths.serial_log(), paths.qemu_log()}, profile.logs.max_size,
      [this](const std::string& error) { journal("QVM_LOG_ROTATE_FAILED", {{"error", error}}); });
  if (options.attach_pid) {
    attach(*options.attach_pid);
  } else {
    launch();
  }
  // After a finish() that did not wait, io is stopped and run() returns at once.
  io.run();
  readiness.reset();
  ladder_agent.cancel();
  exit_watch.reset();
  qmp.reset();
  qmp_socket_watch.reset();
  log_rotator.reset();
  control.reset();
  return exit_code;
}

Supervisor::Supervisor(asio::io_context& io, store::VmStore& store, Options options, Environment environment)
    : impl_(std::make_unique<Impl>(io, store, std::move(options), std::move(environment))) {}

Supervisor::~Supervisor() = default;

int Supervisor::run() { return impl_->run(); }

}  // namespace qvm::supervisor
