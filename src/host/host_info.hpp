#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qvm::host {

/// Whether this process can run guests with KVM, and if not, why and what to do.
struct KvmStatus {
  bool usable = false;
  int api_version = 0;
  std::string problem;  // one clause: "/dev/kvm does not exist", "no permission to open /dev/kvm"
  std::string hint;     // the fix: "join the kvm group: ..."
};

/// The QEMU binary qvm will run, discovered once per invocation.
struct QemuInfo {
  std::filesystem::path binary;  // absolute
  int major = 0;
  int minor = 0;
  int micro = 0;
  std::string version_text;      // "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"
  bool has_sandbox = false;      // built with seccomp: -sandbox is accepted
};

/// OVMF images for firmware = "uefi".
struct UefiFirmware {
  std::filesystem::path code;           // read-only executable image
  std::filesystem::path vars_template;  // copied once per VM as its NVRAM
};

/// Everything the command line builder needs to know about the host.
struct HostInfo {
  KvmStatus kvm;
  QemuInfo qemu;
  std::optional<UefiFirmware> uefi;  // nullopt: no usable OVMF installed
};

/// The slice of the OS the KVM probe uses, so tests can fake a host without /dev/kvm.
class KvmSystem {
 public:
  struct DeviceOwner {
    unsigned uid = 0;
    unsigned gid = 0;
    unsigned mode = 0;
  };
  virtual ~KvmSystem() = default;
  /// stat() of `path`: 0 and `out` filled, or an errno value.
  virtual int stat_device(const std::string& path, DeviceOwner& out) = 0;
  /// open(O_RDWR|O_CLOEXEC): a file descriptor, or -errno.
  virtual int open_device(const std::string& path) = 0;
  /// ioctl(): its non-negative result, or -errno.
  virtual int ioctl(int fd, unsigned long request, unsigned long arg) = 0;
  virtual void close(int fd) = 0;
  /// The name of group `gid`, or nullopt if it has none.
  virtual std::optional<std::string> group_name(unsigned gid) = 0;
  /// True if this process has `gid` as its effective or a supplementary group.
  virtual bool process_in_group(unsigned gid) = 0;
  /// True if the user database lists this process's user in group `gid` (a re-login away).
  virtual bool user_listed_in_group(unsigned gid) = 0;
  /// The effective uid of this process.
  virtual unsigned effective_uid() = 0;
};

/// The real system calls. Thread-compatible.
KvmSystem& real_kvm_system();

/// Probes `device` with the KVM API: open, KVM_GET_API_VERSION, the extensions QEMU needs,
/// and KVM_CREATE_VM. Never throws; an unusable KVM is described in the result.
KvmStatus probe_kvm(KvmSystem& system, const std::string& device = "/dev/kvm");

/// Result of running a program to completion.
struct ProgramOutput {
  int exit_code = -1;
  std::string out;  // stdout and stderr, interleaved
};

/// Runs argv (no shell) and waits for it; throws qvm::Error if it cannot be started.
using ProgramRunner = std::function<ProgramOutput(const std::vector<std::string>& argv)>;

/// Finds `binary` (a path, or a name looked up in `path_env`). nullopt if absent.
std::optional<std::filesystem::path> find_program(std::string_view binary,
                                                  std::string_view path_env);

/// Parses the output of `qemu-system-x86_64 -help` (first line carries the version).
/// Throws HostError if it does not look like QEMU's.
QemuInfo parse_qemu_help(std::string_view help_output, const std::filesystem::path& binary);

/// Locates and interrogates the QEMU binary named by a profile. Throws HostError with the
/// package to install when it is missing, or when it is older than 7.2.
QemuInfo probe_qemu(std::string_view binary, const ProgramRunner& run);

/// probe_qemu, remembered in `cache_file` for the same binary (path, device, inode, size,
/// modification time): `-help` costs 15-50 ms of every start. An unreadable, stale or
/// corrupt cache is probed again and rewritten (best effort: a cache that cannot be
/// written is only slower).
QemuInfo probe_qemu(std::string_view binary, const ProgramRunner& run,
                    const std::filesystem::path& cache_file);

/// Picks a UEFI firmware from QEMU firmware descriptors (docs/interop/firmware.json) in
/// `descriptor_dirs`, preferring plain UEFI without Secure Boot or SMM; falls back to the
/// well-known Debian OVMF paths under `fallback_root`. nullopt if none exists.
std::optional<UefiFirmware> find_uefi_firmware(
    const std::vector<std::filesystem::path>& descriptor_dirs,
    const std::filesystem::path& fallback_root = "/");

/// The standard firmware descriptor folders, highest priority first.
std::vector<std::filesystem::path> default_firmware_descriptor_dirs();

/// What a profile needs to know about the host.
struct HostNeeds {
  bool kvm = true;    // false for accel = "tcg": skips opening /dev/kvm and creating a test VM
  bool uefi = false;  // look for OVMF
};

/// Probes KVM (through `kvm`) and OVMF as `needs` says, and the QEMU binary named by a
/// profile. Throws HostError when QEMU is missing or unusable; KVM problems are in the
/// result (not probed: unusable, "not probed"). A non-empty `qemu_cache` remembers the QEMU
/// probe there (see probe_qemu).
HostInfo probe_host(std::string_view qemu_binary, HostNeeds needs, const ProgramRunner& run,
                    KvmSystem& kvm = real_kvm_system(), const std::filesystem::path& qemu_cache = {});

/// Whether QEMU can drop to `user` ([qemu] user -> -runas): qvm must run as root (`euid` 0)
/// and the user must exist (`user_exists`, getpwnam by default). Throws HostError naming
/// the fix otherwise.
void check_qemu_user(const std::string& user, unsigned euid,
                     const std::function<bool(const std::string&)>& user_exists = {});

}  // namespace qvm::host
