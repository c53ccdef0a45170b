#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "process/child.hpp"
#include "qvm/vm.hpp"

namespace qvm::supervisor {

/// Who asked QEMU to stop, as far as the supervisor knows.
enum class StopIntent { none, down, kill };

/// Why QEMU stopped, in the words `qvm status` uses.
struct ExitReason {
  VmState state = VmState::stopped;
  std::string reason;       // "guest shutdown", "host request", "killed by signal 9 (SIGKILL)"
  std::string reason_code;  // guest-shutdown, host-request, host-kill, guest-panic, guest-reset,
                            // crash-signal, crash-exit, crash-eof, start-failed
};

/// Classifies an exit from what the supervisor saw: its own intent, the last SHUTDOWN event
/// (its "data"), whether GUEST_PANICKED arrived, and the process status. Pure.
ExitReason classify_exit(StopIntent intent, const std::optional<nlohmann::json>& shutdown_event,
                         bool panicked, const process::ExitStatus& status);

}  // namespace qvm::supervisor
