#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include "qvm/vm.hpp"
#include "store/vm_store.hpp"

namespace qvm::supervisor {

/// Starts VM `name` (defined in `store`, stopped): creates missing disks, then either runs
/// the supervisor here until the VM stops (foreground) or launches a detached supervisor
/// and waits for it to report ready. Throws VmStateError if the VM is already running,
/// store::BusyError if another qvm is starting it, qvm::Error with the cause (and the tail
/// of qemu.log) if it fails to start.
VmStatus start_vm(store::VmStore& store, const std::string& name, const StartOptions& options);

/// The body of the hidden `qvm __supervise` command: detaches (fork, the parent returns 0
/// at once), then supervises VM `name`, reporting start progress as JSON lines on
/// `notify_fd` (-1: none). Returns the supervisor's exit code in the detached child.
int run_detached_supervisor(store::VmStore& store, const std::string& name, int notify_fd,
                            std::optional<std::chrono::seconds> ready_timeout,
                            std::optional<int> attach_pid = std::nullopt);

/// The status with the truth restored. If state.json says the VM is active but its
/// supervisor is dead: when its QEMU still runs (proven by is_vm_qemu, so a recycled pid or
/// a copied command line never counts), a new supervisor re-attaches to it; otherwise the
/// VM is marked crashed ("vanished") on disk. If state.json cannot be read but the
/// supervisor lives, the supervisor is asked (and rewrites the file); reason_code is then
/// "state-unreadable" and the reason names the file.
VmStatus reconcile_status(const store::VmStore& store, const std::string& name);

/// The identity of the QEMU just started as `pid` for `profile`, read from `proc`; nullopt
/// if it cannot be read (the process is already gone).
std::optional<QemuIdentity> identify_qemu(int pid, const Profile& profile,
                                          const std::filesystem::path& proc = "/proc");

/// True only if `pid` is alive and provably the process `identity` recorded: same start
/// time in the same boot, same executable (or that file replaced by an upgrade), running
/// as the recorded user (or as this one). No identity (an older qvm's state.json): false.
bool is_vm_qemu(int pid, const std::optional<QemuIdentity>& identity,
                const std::filesystem::path& proc = "/proc");

}  // namespace qvm::supervisor
