#pragma once

#include <filesystem>

namespace qvm {

/// Where one VM's files live. The state dir holds what must persist (logs, NVRAM); the
/// runtime dir is short enough for every socket path to fit in sun_path (108 bytes).
struct RunPaths {
  std::filesystem::path state_dir;    // <state root>/vms/<name>
  std::filesystem::path runtime_dir;  // e.g. /run/user/1000/qvm/<hash>

  /// The supervisor's private QMP monitor.
  std::filesystem::path supervisor_qmp() const { return runtime_dir / "supervisor.qmp"; }
  /// The QMP monitor for the CLI and embedders.
  std::filesystem::path client_qmp() const { return runtime_dir / "qmp.sock"; }
  /// The guest's first serial port, for `qvm console`.
  std::filesystem::path console_socket() const { return runtime_dir / "console.sock"; }
  /// The qemu-guest-agent channel.
  std::filesystem::path agent_socket() const { return runtime_dir / "agent.sock"; }
  /// QEMU's -pidfile.
  std::filesystem::path qemu_pidfile() const { return runtime_dir / "qemu.pid"; }
  /// Everything the guest wrote to its serial console.
  std::filesystem::path serial_log() const { return state_dir / "serial.log"; }
  /// QEMU's own stdout and stderr.
  std::filesystem::path qemu_log() const { return state_dir / "qemu.log"; }
  /// The VM's private copy of the UEFI variable store.
  std::filesystem::path uefi_vars() const { return state_dir / "uefi-vars.fd"; }
  /// The cloud-init NoCloud seed image (ISO 9660, label "cidata"), rewritten at each start.
  std::filesystem::path cloud_init_seed() const { return state_dir / "cloud-init.iso"; }
};

}  // namespace qvm
