#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace qvm {

/// Every file of one VM, named in this one place (as leveldb's db/filename.h does for a
/// database): nothing else in qvm spells a file name of a VM folder or of its runtime dir.
/// The state dir holds what must persist (logs, NVRAM); the runtime dir is short enough for
/// every socket path to fit in sun_path (108 bytes). Pure names: no accessor touches the disk.
struct RunPaths {
  std::filesystem::path state_dir;    // <state root>/vms/<name>
  std::filesystem::path runtime_dir;  // e.g. /run/user/1000/qvm/<hash>

  // --- the state dir ---

  /// The resolved profile; its presence is what makes a folder a defined VM.
  std::filesystem::path profile() const { return state_dir / "profile.toml"; }
  /// The VM's status (VmStatus as JSON), replaced atomically.
  std::filesystem::path state() const { return state_dir / "state.json"; }
  /// The event journal, JSON lines; rotated to `events.jsonl.1`.
  std::filesystem::path events() const { return state_dir / "events.jsonl"; }
  /// Everything the guest wrote to its serial console.
  std::filesystem::path serial_log() const { return state_dir / "serial.log"; }
  /// QEMU's own stdout and stderr.
  std::filesystem::path qemu_log() const { return state_dir / "qemu.log"; }
  /// The detached supervisor's stdout and stderr.
  std::filesystem::path supervisor_log() const { return state_dir / "supervisor.log"; }
  /// The snapshot tree's metadata.
  std::filesystem::path snapshots() const { return state_dir / "snapshots.json"; }
  /// The disk images qvm created for this VM (so `rm --disks` deletes only those).
  std::filesystem::path created_disks() const { return state_dir / "created-disks.json"; }
  /// Present while the VM is a throwaway of `qvm run --rm`: remove it once it stops.
  std::filesystem::path transient_marker() const { return state_dir / "transient"; }
  /// Held by the qvm command operating on the VM (up, start, rm, snapshot...).
  std::filesystem::path operation_lock() const { return state_dir / "operation.lock"; }
  /// Held by the VM's supervisor for its whole life.
  std::filesystem::path supervisor_lock() const { return state_dir / "supervisor.lock"; }
  /// The VM's private copy of the UEFI variable store.
  std::filesystem::path uefi_vars() const { return state_dir / "uefi-vars.fd"; }
  /// The cloud-init NoCloud seed image (ISO 9660, label "cidata"), rewritten at each start.
  std::filesystem::path cloud_init_seed() const { return state_dir / "cloud-init.iso"; }
  /// The folder of snapshot overlays.
  std::filesystem::path snapshot_disks() const { return state_dir / "disks"; }
  /// The overlay of disk `device_id` made by snapshot operation number `sequence`.
  std::filesystem::path snapshot_overlay(std::string_view device_id, unsigned long long sequence) const {
    return snapshot_disks() / (std::string(device_id) + "." + std::to_string(sequence) + ".qcow2");
  }
  /// The folder of a `qvm run` VM's throwaway overlays.
  std::filesystem::path run_disks() const { return state_dir / "run-disks"; }
  /// The throwaway overlay of disk number `index` of a `qvm run` VM.
  std::filesystem::path run_overlay(std::size_t index) const {
    return run_disks() / ("disk" + std::to_string(index) + ".qcow2");
  }

  // --- the runtime dir ---

  /// The supervisor's private QMP monitor.
  std::filesystem::path supervisor_qmp() const { return runtime_dir / "supervisor.qmp"; }
  /// The QMP monitor for the CLI and embedders.
  std::filesystem::path client_qmp() const { return runtime_dir / "qmp.sock"; }
  /// The guest's first serial port, for `qvm console`.
  std::filesystem::path console_socket() const { return runtime_dir / "console.sock"; }
  /// The qemu-guest-agent channel.
  std::filesystem::path agent_socket() const { return runtime_dir / "agent.sock"; }
  /// The supervisor's control socket (ping, down, kill...).
  std::filesystem::path control_socket() const { return runtime_dir / "control.sock"; }
  /// QEMU's -pidfile.
  std::filesystem::path qemu_pidfile() const { return runtime_dir / "qemu.pid"; }
};

/// The folder holding one folder per VM under `state_root`.
inline std::filesystem::path vms_dir(const std::filesystem::path& state_root) { return state_root / "vms"; }

/// Where this user's QEMU probe is remembered, in the runtime root (gone after a reboot).
inline std::filesystem::path qemu_probe_cache(const std::filesystem::path& runtime_root) {
  return runtime_root / "qemu-probe.json";
}

}  // namespace qvm
