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
/// supervisor is dead: when its QEMU still runs (checked by pid and UUID, so a recycled pid
/// never counts), a new supervisor re-attaches to it; otherwise the VM is marked crashed
/// ("vanished") on disk.
VmStatus reconcile_status(const store::VmStore& store, const std::string& name);

/// True if `pid` is alive and is the QEMU of the VM with `uuid` (guards against pid reuse).
bool is_vm_qemu(int pid, const std::string& uuid);

}  // namespace qvm::supervisor
