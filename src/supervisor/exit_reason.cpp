#include "supervisor/exit_reason.hpp"

#include <algorithm>
#include <cctype>

namespace qvm::supervisor {

ExitReason classify_exit(StopIntent intent, const std::optional<nlohmann::json>& shutdown_event,
                         bool panicked, const process::ExitStatus& status) {
  if (intent == StopIntent::kill) return {VmState::stopped, "host request (forced)", "host-kill"};
  if (intent == StopIntent::down) return {VmState::stopped, "host request", "host-request"};
  if (panicked) return {VmState::crashed, "guest panic", "guest-panic"};
  if (shutdown_event) {
    const std::string cause = shutdown_event->value("reason", "");
    const bool by_guest = shutdown_event->value("guest", false);
    if (cause == "guest-panic") return {VmState::crashed, "guest panic", "guest-panic"};
    if (cause == "guest-reset" ) return {VmState::stopped, "guest reset with -no-reboot", "guest-reset"};
    if (by_guest) return {VmState::stopped, "guest shutdown", "guest-shutdown"};
    if (cause == "host-signal") {
      return {VmState::stopped, "host request (QEMU received a termination signal)", "host-request"};
    }
    if (cause == "host-qmp-quit" || cause == "host-qmp-system-reset" || cause == "host-ui") {
      return {VmState::stopped, "host request (" + cause + ")", "host-request"};
    }
    return {VmState::stopped, "shutdown (" + cause + ")", "shutdown"};
  }
  if (!status.known) {
    return {VmState::crashed, "QEMU exited without a shutdown event (exit status unknown)", "crash-eof"};
  }
  if (status.signaled) return {VmState::crashed, status.describe(), "crash-signal"};
  if (status.code != 0) return {VmState::crashed, "QEMU " + status.describe(), "crash-exit"};
  return {VmState::crashed, "QEMU exited without a shutdown event", "crash-eof"};
}

std::optional<std::string> kvm_fallback(const KvmRun& run, const process::ExitStatus& status) {
  if (!run.used_kvm || run.fell_back_before || run.profile_accel != Accel::automatic || !run.start_over) {
    return std::nullopt;
  }
  std::string lower = run.log_tail;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  // A QEMU that died for another reason (a bad -device) must say so, not be retried.
  if (lower.find("kvm") == std::string::npos) return std::nullopt;
  std::string first = run.log_tail.substr(0, run.log_tail.find('\n'));
  if (const auto error = first.find("error: "); error != std::string::npos) first = first.substr(error + 7);
  return "QEMU " + status.describe() + " on it: " + first;
}

}  // namespace qvm::supervisor
