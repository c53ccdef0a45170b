#include "supervisor/exit_reason.hpp"

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

}  // namespace qvm::supervisor
