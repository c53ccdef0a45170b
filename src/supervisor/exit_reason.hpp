#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "process/child.hpp"
#include "qvm/profile.hpp"
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

/// What the supervisor knows of a run of QEMU that has just exited, for the KVM fallback.
struct KvmRun {
  Accel profile_accel = Accel::automatic;  // what the profile asked for
  bool used_kvm = false;                   // this run was started with -accel kvm
  bool fell_back_before = false;           // an earlier run already fell back to TCG
  bool start_over = false;  // it got no further than the start: not ready, nothing reported
                            // to `up`, no start error of its own, nobody asked it to stop
  std::string log_tail;     // the last lines QEMU wrote to its log during this run
};

/// Decides whether accel = "auto" retries a run under TCG: it chose KVM because /dev/kvm
/// answered, but QEMU died on it before the guest ran (nested KVM that refuses the host CPU's
/// MSRs), and "auto" means the best accelerator that works. Returns why KVM is broken, in
/// the words `qvm status` warns with ("QEMU killed by signal 6 (SIGABRT) on it: failed to
/// set MSR ..."), or nullopt to keep the exit as it is. Pure.
std::optional<std::string> kvm_fallback(const KvmRun& run, const process::ExitStatus& status);

}  // namespace qvm::supervisor
