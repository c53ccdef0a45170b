// The supervisor's stopping side: control requests, the shutdown ladder's actions, QEMU's
// exit (and the KVM fallback), restarts, and the supervisor's own end.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>

#include "qvm/agent.hpp"
#include "store/files.hpp"
#include "supervisor/supervisor_impl.hpp"

namespace qvm::supervisor {
namespace asio = boost::asio;
namespace fs = std::filesystem;
using std::chrono::milliseconds;

LadderActions Supervisor::Impl::ladder_actions() {
  LadderActions actions;
  const auto execute = [this](const char* command) {
    if (qmp && qmp->connected()) qmp->async_execute(command, nullptr, std::chrono::seconds(5), [](auto, auto) {});
  };
  actions.resume = [execute] { execute("cont"); };
  actions.press_button = [execute] { execute("system_powerdown"); };
  actions.quit = [execute] { execute("quit"); };
  actions.ask_agent = [this](std::function<void(bool)> accepted) {
    ladder_agent.run(
        [socket = paths.agent_socket()](const std::atomic<bool>&) {
          AgentClient agent(socket, std::chrono::seconds(3));
          agent.shutdown(AgentShutdownMode::powerdown, std::chrono::seconds(3));
        },
        std::move(accepted));
  };
  actions.signal = [this](int signal) {
    if (qemu) qemu->send_signal(signal);
  };
  actions.progress = [this](const std::string& message) {
    for (auto& reply : waiting) reply->progress(message);
  };
  actions.entered = [this](LadderStep step) { journal("QVM_DOWN_STEP", {{"step", std::string(to_string(step))}}); };
  return actions;
}

// ---- exit -------------------------------------------------------------------------------

void Supervisor::Impl::on_qemu_exit(process::ExitStatus exit) {
  // Tear down this run's watchers on a fresh stack: we are inside one of their handlers.
  asio::post(io, [this, exit] { handle_exit(exit); });
}

void Supervisor::Impl::handle_exit(process::ExitStatus exit) {
  readiness.reset();
  ladder_agent.cancel();
  qmp_timer.cancel();
  qmp_socket_watch.reset();
  ladder.stop();
  if (qmp) qmp->close();
  qmp.reset();
  exit_watch.reset();
  qemu.reset();

  ExitReason why = classify_exit(intent, shutdown_event, panicked, exit);
  const bool start_over = !status.ready && !start_reported && !start_error && intent == StopIntent::none;
  if (run_uses_kvm) {
    const std::string log = store::tail_lines(paths.qemu_log(), 8, qemu_log_offset);
    if (auto broken = kvm_fallback({profile.accel, run_uses_kvm, kvm_broken.has_value(), start_over, log}, exit)) {
      kvm_broken = std::move(broken);
      transition(Phase::restarting, "QVM_KVM_FALLBACK", {{"status", exit.describe()}, {"log", log}}, false);
      // From a fresh handler, as a restart does: the old run's watchers may still have
      // completions queued.
      restart_timer.expires_after(milliseconds(0));
      restart_timer.async_wait([this](boost::system::error_code ec) {
        if (!ec && phase == Phase::restarting) launch();
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
  const std::string step = std::string(to_string(ladder.step()));
  status.state = why.state;
  status.reason = why.reason;
  status.reason_code = why.reason_code;
  status.pid.reset();
  status.stopped_at = env.now();
  status.exit_code = exit.known && !exit.signaled ? std::optional<int>(exit.code) : std::nullopt;
  status.exit_signal = exit.known && exit.signaled ? std::optional<int>(exit.code) : std::nullopt;
  if (intent == StopIntent::down) status.last_down_step = step;
  if (intent == StopIntent::kill) status.last_down_step = "sigkill";
  status.ready = false;
  save();
  nlohmann::json data = {{"state", std::string(to_string(status.state))},
                         {"reason", status.reason},
                         {"reason_code", status.reason_code},
                         {"status", exit.describe()}};
  if (intent == StopIntent::down) data["step"] = step;
  journal("QVM_EXIT", data);
  if (start_failure) notify({{"phase", "failed"}, {"error", *start_failure}});
  // Anyone still waiting for `up` learns it is over.
  notify({{"phase", "failed"}, {"error", "the VM stopped: " + status.reason}});

  for (auto& reply : waiting) {
    nlohmann::json result = {{"ok", true}, {"state", std::string(to_string(status.state))}, {"reason", status.reason}};
    if (intent == StopIntent::down) {
      result["step"] = step;
      result["elapsed_ms"] = ladder.elapsed().count();
    }
    reply->finish(result);
  }
  waiting.clear();

  if (should_restart(why)) return schedule_restart();
  exit_code = status.state == VmState::crashed ? 1 : 0;
  finish();
}

bool Supervisor::Impl::should_restart(const ExitReason& why) const {
  if (intent != StopIntent::none || why.reason_code == "start-failed") return false;
  switch (profile.shutdown.restart) {
    case RestartPolicy::no: return false;
    case RestartPolicy::on_failure: return why.state == VmState::crashed;
    case RestartPolicy::always: return true;
  }
  return false;
}

void Supervisor::Impl::schedule_restart() {
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
  transition(Phase::restarting, "QVM_RESTART", {{"in_ms", delay.count()}, {"restarts", status.restarts + 1}}, false);
  restart_timer.expires_after(quick ? delay : milliseconds(0));
  restart_timer.async_wait([this](boost::system::error_code ec) {
    if (ec || phase != Phase::restarting) return;
    ++status.restarts;
    launch();
  });
}

void Supervisor::Impl::remove_runtime_files() {
  for (const auto& file : {paths.supervisor_qmp(), paths.client_qmp(), paths.console_socket(), paths.agent_socket(),
                           paths.qemu_pidfile()}) {
    std::error_code ec;
    fs::remove(file, ec);
  }
}

void Supervisor::Impl::finish() {
  if (phase == Phase::exited) return;
  transition(Phase::exited, {}, {}, false);
  for (auto& reply : waiting) reply->finish({{"ok", true}, {"state", std::string(to_string(status.state))}});
  waiting.clear();
  qmp_timer.cancel();
  qmp_socket_watch.reset();
  ladder.stop();
  restart_timer.cancel();
  // QEMU removes its sockets when it exits cleanly, not when it is killed.
  remove_runtime_files();
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

void Supervisor::Impl::close_down() {
  linger_timer.cancel();
  saver->cancel();
  if (control) control->close();
  boost::system::error_code ignored;
  signals.cancel(ignored);
  io.stop();
}

// ---- down and kill ----------------------------------------------------------------------

void Supervisor::Impl::on_control(const ControlRequest& request, std::shared_ptr<ControlReply> reply) {
  const std::string& op = request.op;
  if (op == "ping") {
    try {
      save();  // rewrites a state.json that was damaged behind our back; else writes nothing
    } catch (const std::exception&) {
      // The answer matters more than the repair; the next save tries again.
    }
    return reply->finish({{"ok", true},
                          {"supervisor_pid", ::getpid()},
                          {"pid", status.pid ? nlohmann::json(*status.pid) : nlohmann::json(nullptr)},
                          {"state", std::string(to_string(status.state))}});
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

void Supervisor::Impl::kill_now() {
  intent = StopIntent::kill;
  ladder.stop();
  const bool changed = status.state != VmState::stopping;
  if (changed) {
    status.state = VmState::stopping;
    status.reason = "killing";
    status.reason_code = "stopping";
  }
  if (phase != Phase::stopping) {
    transition(Phase::stopping, "QVM_KILL", {}, changed);
  } else {
    if (changed) save();
    journal("QVM_KILL");
  }
  if (qemu) qemu->send_signal(SIGKILL);
}

// With `refuse_unrecorded`, a down that state.json cannot record is not begun: stopping
// a guest whose disks may sit on that full disk can lose what it has not written yet, and
// `qvm kill` is there for whoever wants it stopped anyway. Returns why it was refused.
std::optional<std::string> Supervisor::Impl::begin_down(bool force, std::chrono::seconds timeout,
                                                        bool refuse_unrecorded) {
  restart_timer.cancel();
  if (intent == StopIntent::kill) return std::nullopt;
  if (intent == StopIntent::down) {
    // Already on the ladder; --force skips what is left of the ACPI step.
    if (force) ladder.skip_graceful();
    return std::nullopt;
  }
  const VmStatus before = status;
  intent = StopIntent::down;
  status.state = VmState::stopping;
  status.reason = "shutting down";
  status.reason_code = "stopping";
  // Saved before the move: a refused down leaves the phase where it was.
  if (!save() && refuse_unrecorded) {
    const std::string error = saver->last_error();
    intent = StopIntent::none;
    status = before;
    saver->save(status);  // what is still to be written is the state before this down
    journal("QVM_DOWN_REFUSED", {{"error", error}});
    return "cannot shut VM \"" + options.name + "\" down: its state cannot be recorded: " + error +
           "; the VM keeps running (qvm kill " + options.name + " stops it at once)";
  }
  if (phase != Phase::stopping) {
    transition(Phase::stopping, "QVM_DOWN", {{"timeout", timeout.count()}, {"force", force}}, false);
  } else {
    journal("QVM_DOWN", {{"timeout", timeout.count()}, {"force", force}});
  }
  const bool graceful = !force && qmp && qmp->connected();
  ladder.begin(graceful, profile.agent, timeout);
  return std::nullopt;
}

// The end of a failed start: nothing may keep running.
void Supervisor::Impl::stop_ladder_now() {
  if (!qemu) return;
  intent = StopIntent::kill;
  if (phase != Phase::stopping) transition(Phase::stopping, {}, {}, false);
  qemu->send_signal(SIGKILL);
}

void Supervisor::Impl::watch_signals() {
  signals.async_wait([this](boost::system::error_code ec, int signal) {
    if (ec) return;
    journal("QVM_SUPERVISOR_SIGNAL", {{"signal", signal}});
    // Waiting for state.json to take the final state: a signal ends the wait.
    if (phase == Phase::exited) return close_down();
    // SIGHUP: the terminal went away, which a detached supervisor does not care about.
    if (signal != SIGHUP && qemu) begin_down(false, profile.shutdown.timeout);
    watch_signals();
  });
}

}  // namespace qvm::supervisor
