#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "command_line/run_paths.hpp"
#include "host/host_info.hpp"
#include "qvm/profile.hpp"

namespace qvm {

/// The accelerator a VM will really use, and the warning to show when it is not the one
/// the user hoped for.
struct AccelChoice {
  Accel accel = Accel::tcg;  // kvm or tcg, never automatic
  std::optional<std::string> warning;
};

/// Resolves `wanted` against the host. Throws HostError (with the fix) when kvm is
/// demanded and unusable; automatic falls back to tcg with a one-line warning.
AccelChoice choose_accel(Accel wanted, const host::KvmStatus& kvm);

/// A QEMU invocation: argv[0] is the binary. Nothing in it is ever given to a shell.
struct CommandLine {
  std::vector<std::string> argv;
  Accel accel = Accel::tcg;
  std::vector<std::string> warnings;
};

/// Builds the QEMU argv for `profile` on `host` with files at `paths`. Pure: no I/O, no
/// clock. Throws HostError when the host lacks what the profile needs (KVM, OVMF).
CommandLine build_command_line(const Profile& profile, const host::HostInfo& host,
                               const RunPaths& paths, std::string_view uuid);

/// Escapes a value for QEMU's key=value option syntax: every ',' becomes ",,".
std::string escape_option_value(std::string_view value);

/// Quotes one word for a POSIX shell, only when it needs quoting.
std::string shell_quote(std::string_view word);

/// argv as one shell-quoted line, for `qvm up --dry-run`.
std::string shell_join(const std::vector<std::string>& argv);

/// The MAC address of NIC `index` when the profile gives none: 52:54:00 (QEMU's prefix)
/// followed by three bytes derived from the VM's UUID, so it is stable per VM.
std::string default_mac(std::string_view uuid, std::size_t index);

/// QMP node name of disk `index`'s format layer (the active image), e.g. "disk0-format".
std::string disk_format_node(std::size_t index);
/// QMP node name of disk `index`'s protocol (file) layer, e.g. "disk0-storage".
std::string disk_storage_node(std::size_t index);
/// qdev id of disk `index`'s guest device, e.g. "disk0".
std::string disk_device_id(std::size_t index);

/// QMP node name (and qdev id) of the cloud-init seed drive.
inline constexpr std::string_view kCloudInitNode = "cloud-init";
/// QMP node name of the cloud-init seed's file layer.
inline constexpr std::string_view kCloudInitStorageNode = "cloud-init-storage";

}  // namespace qvm
