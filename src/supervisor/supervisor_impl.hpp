#pragma once

// The supervisor's inside, shared by supervisor.cpp (the start: launch, re-attach, QMP,
// readiness, events) and supervisor_stop.cpp (down, kill, QEMU's exit, restart, the end).
// Everything runs on the io_context's thread.

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "qvm/qmp.hpp"
#include "store/files.hpp"
#include "supervisor/control.hpp"
#include "supervisor/detached_work.hpp"
#include "supervisor/exit_reason.hpp"
#include "supervisor/folder_watch.hpp"
#include "supervisor/log_rotation.hpp"
#include "supervisor/phase.hpp"
#include "supervisor/readiness.hpp"
#include "supervisor/shutdown_ladder.hpp"
#include "supervisor/state_saver.hpp"
#include "supervisor/supervisor.hpp"

namespace qvm::supervisor {

struct Supervisor::Impl {
  using Clock = std::chrono::steady_clock;

  Impl(boost::asio::io_context& io, store::VmStore& store, Options options, Environment env);

  boost::asio::io_context& io;
  store::VmStore& store;
  Options options;
  Environment env;

  Profile profile;
  RunPaths paths;
  VmStatus status;
  std::optional<store::FileLock> lock;
  std::unique_ptr<ControlServer> control;
  std::unique_ptr<LogRotator> log_rotator;  // caps serial.log and qemu.log (append_event: events.jsonl)
  boost::asio::signal_set signals;

  // ---- the phase: one value, changed by transition() only -------------------------------

  Phase phase = Phase::idle;

  // Moves to `to`; a move the table (phase.cpp) refuses is a bug and throws std::logic_error.
  // Then saves state.json (unless `save_status` is false: the caller saved, or nothing
  // changed) and journals `event` (unless empty, or the start is being undone because it
  // could not be recorded). Returns false if the save failed.
  bool transition(Phase to, const std::string& event = {}, nlohmann::json data = nlohmann::json::object(),
                  bool save_status = true);

  // ---- the current run of QEMU ----------------------------------------------------------

  std::optional<process::Process> qemu;
  std::unique_ptr<process::ExitWatcher> exit_watch;
  std::unique_ptr<QmpClient> qmp;
  std::unique_ptr<Readiness> readiness;
  std::unique_ptr<FolderWatch> qmp_socket_watch;  // waits for QEMU to create its QMP socket
  boost::asio::steady_timer qmp_timer;
  Clock::time_point qmp_deadline;
  Clock::time_point run_started;
  std::uint64_t qemu_log_offset = 0;  // where this run's lines begin in qemu.log
  std::optional<nlohmann::json> shutdown_event;
  bool panicked = false;
  bool start_reported = false;              // `up` has heard its last word (ready or failed)
  std::optional<std::string> start_error;   // this run failed to start, and why
  bool start_unrecorded = false;            // ... because state.json could not say so
  bool run_uses_kvm = false;                // this run's QEMU was started with -accel kvm
  bool run_adopted = false;                 // this run's QEMU was started by an earlier supervisor
  std::optional<std::string> kvm_broken;    // accel = "auto": KVM opened, but QEMU died on it
  std::optional<std::string> io_error_pause;  // BLOCK_IO_ERROR said QEMU stops the VM for it

  // ---- stopping -------------------------------------------------------------------------

  StopIntent intent = StopIntent::none;
  AsioLadderTimer ladder_timer;
  ShutdownLadder ladder;
  DetachedWork ladder_agent;  // the ladder's guest-shutdown request (blocking client)
  std::vector<std::shared_ptr<ControlReply>> waiting;

  // ---- restarts and the end -------------------------------------------------------------

  boost::asio::steady_timer restart_timer;
  int quick_crashes = 0;
  int exit_code = 0;
  std::unique_ptr<StateSaver> saver;  // state.json catches up through it when the disk refuses
  boost::asio::steady_timer linger_timer;

  // The state.json each save replaces is let go of once the handler that saved has run,
  // after its notify: freeing the file's blocks can wait on the disk (see ReplacedFiles).
  std::shared_ptr<store::ReplacedFiles> replaced_files = std::make_shared<store::ReplacedFiles>();

  // supervisor.cpp
  int run();
  bool save(Phase judged);
  bool save() { return save(phase); }
  void write_status(const VmStatus& current);
  void fail_unrecorded_start(const std::string& error);
  void journal(const std::string& event, nlohmann::json data = nlohmann::json::object());
  void notify(nlohmann::json message);
  void take_lock();
  void clear_runtime_dir();
  void launch();
  Profile with_active_images(const Profile& original) const;
  void connect_qmp(std::uint64_t serial_offset);
  void resume_guest(std::uint64_t serial_offset);
  void attach(int pid);
  void adopt_running_guest();
  bool ready_at_qmp() const;
  void wait_until_ready(std::uint64_t serial_offset);
  void became_ready(const std::string& how);
  void start_failed(const std::string& error);
  void on_event(const QmpEvent& event);
  void watch_exit();

  // supervisor_stop.cpp
  LadderActions ladder_actions();
  void on_qemu_exit(process::ExitStatus exit);
  void handle_exit(process::ExitStatus exit);
  bool should_restart(const ExitReason& why) const;
  void schedule_restart();
  void finish();
  void close_down();
  void on_control(const ControlRequest& request, std::shared_ptr<ControlReply> reply);
  void kill_now();
  std::optional<std::string> begin_down(bool force, std::chrono::seconds timeout, bool refuse_unrecorded = false);
  void stop_ladder_now();
  void watch_signals();
  void remove_runtime_files();
};

}  // namespace qvm::supervisor
