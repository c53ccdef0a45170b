#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qvm/error.hpp"

namespace qvm {

enum class Machine { q35, pc, microvm };
enum class Accel { automatic, kvm, tcg };
enum class Firmware { bios, uefi };
enum class DiskFormat { qcow2, raw };
enum class DiskBus { virtio, scsi, nvme, ide };
enum class CacheMode { none, writeback, writethrough, unsafe, directsync };
enum class NetMode { user, bridge, tap, none };
enum class RestartPolicy { no, on_failure, always };

/// The profile spelling of each enum value ("q35", "on-failure", "auto", ...).
std::string_view to_string(Machine);
std::string_view to_string(Accel);
std::string_view to_string(Firmware);
std::string_view to_string(DiskFormat);
std::string_view to_string(DiskBus);
std::string_view to_string(CacheMode);
std::string_view to_string(NetMode);
std::string_view to_string(RestartPolicy);

/// One `forward` rule of a user-mode NIC: host address:port -> guest port.
struct PortForward {
  std::string protocol = "tcp";         // tcp | udp
  std::string host_address = "127.0.0.1";  // loopback unless the rule names an address
  std::uint16_t host_port = 0;
  std::uint16_t guest_port = 0;
  friend bool operator==(const PortForward&, const PortForward&) = default;
};

struct Disk {
  std::filesystem::path path;                  // absolute
  DiskFormat format = DiskFormat::qcow2;
  DiskBus bus = DiskBus::virtio;
  CacheMode cache = CacheMode::writeback;
  std::optional<std::uint64_t> size_bytes;     // create the image with this size if missing
  std::optional<std::filesystem::path> backing;  // create as an overlay of this image if missing
  bool readonly = false;
  friend bool operator==(const Disk&, const Disk&) = default;
};

struct Net {
  NetMode mode = NetMode::user;
  std::string bridge;                          // bridge mode: the host bridge
  std::string ifname;                          // tap mode: an existing tap device (optional)
  std::string model = "virtio";                // virtio | e1000 | e1000e | rtl8139 | vmxnet3
  std::optional<std::string> mac;              // unset: derived from the VM's UUID
  std::vector<PortForward> forward;            // user mode only
  friend bool operator==(const Net&, const Net&) = default;
};

struct Ready {
  std::optional<std::string> serial;           // ECMAScript regex on the serial console
  bool agent = false;                          // guest agent answers guest-ping
  std::chrono::seconds timeout{300};
  friend bool operator==(const Ready&, const Ready&) = default;
};

struct Boot {
  std::filesystem::path kernel;                // absolute
  std::optional<std::filesystem::path> initrd;
  std::string cmdline;
  friend bool operator==(const Boot&, const Boot&) = default;
};

struct Shutdown {
  std::chrono::seconds timeout{60};            // each graceful step of the shutdown ladder
  RestartPolicy restart = RestartPolicy::no;
  friend bool operator==(const Shutdown&, const Shutdown&) = default;
};

/// How large the VM's logs may grow (serial.log, qemu.log and events.jsonl each): at
/// max_size a log is rotated to one `.1` copy, so each takes at most twice that on disk.
struct Logs {
  std::uint64_t max_size = std::uint64_t{8} << 20;  // bytes
  friend bool operator==(const Logs&, const Logs&) = default;
};

/// A NoCloud seed for cloud-init, attached as a read-only CD-ROM labelled "cidata".
struct CloudInit {
  std::optional<std::string> hostname;         // unset: the VM's name ("_" becomes "-")
  std::optional<std::string> user;             // a user to create, with sudo and the keys
  std::vector<std::string> ssh_authorized_keys;  // for `user`, else the image's default user
  std::optional<std::filesystem::path> user_data;  // the whole user-data; excludes the two above
  friend bool operator==(const CloudInit&, const CloudInit&) = default;
};

/// A host folder shared with the guest over 9p (virtio-9p), mounted by tag.
struct Share {
  std::filesystem::path path;                  // absolute; an existing folder
  std::string tag;                             // [A-Za-z0-9_-]{1,31}, unique per VM
  bool readonly = false;
  friend bool operator==(const Share&, const Share&) = default;
};

struct QemuOptions {
  std::string binary = "qemu-system-x86_64";   // a name looked up in PATH, or a path
  std::vector<std::string> extra_args;         // appended verbatim after everything qvm adds
  bool sandbox = true;                         // -sandbox on when the QEMU supports it
  std::optional<std::string> user;             // -runas: QEMU drops to this user (qvm as root)
  friend bool operator==(const QemuOptions&, const QemuOptions&) = default;
};

/// A validated VM description. Every path in it is absolute.
struct Profile {
  std::filesystem::path source;                // the profile file ("" for text with no file)
  std::string name;
  std::optional<std::string> uuid;             // unset: chosen when the VM is first defined
  std::uint64_t memory_mib = 1024;
  unsigned cpus = 1;
  Machine machine = Machine::q35;
  Accel accel = Accel::automatic;
  std::string cpu = "host";
  Firmware firmware = Firmware::bios;
  bool agent = false;
  std::optional<Ready> ready;
  std::optional<Boot> boot;
  std::vector<Disk> disks;
  std::vector<Net> nets;                       // no [[net]] in the file: one user-mode NIC
  std::optional<CloudInit> cloud_init;         // unset: no seed CD-ROM
  std::vector<Share> shares;
  Shutdown shutdown;
  Logs logs;
  QemuOptions qemu;
  friend bool operator==(const Profile&, const Profile&) = default;
};

/// One problem found in a profile, with its place in the file.
struct ProfileDiagnostic {
  std::string file;         // the path as the user gave it, or "--set" for overrides
  int line = 0;             // 1-based; 0 when the problem has no single place
  int column = 0;           // 1-based
  std::string key;          // dotted key, e.g. "disk[1].format"; empty for syntax errors
  std::string message;      // what is wrong and what to write instead
  std::string source_line;  // the text of `line`, shown under the message with a caret

  /// "file:line:col: key: message", then the source line and a caret under the column.
  std::string to_string() const;
};

/// A profile that cannot be used; carries every problem found, not only the first.
class ProfileError : public Error {
 public:
  explicit ProfileError(std::vector<ProfileDiagnostic> diagnostics);
  const std::vector<ProfileDiagnostic>& diagnostics() const { return diagnostics_; }

 private:
  std::vector<ProfileDiagnostic> diagnostics_;
};

/// What the validator may ask of the filesystem; tests pass a fake.
class FileChecker {
 public:
  virtual ~FileChecker() = default;
  /// True if `path` names an existing file (or a symlink to one).
  virtual bool exists(const std::filesystem::path& path) const = 0;
  /// True if `path` names an existing folder (or a symlink to one). The default asks
  /// exists(), for checkers that do not tell files from folders.
  virtual bool is_directory(const std::filesystem::path& path) const { return exists(path); }
};

/// The real filesystem. Thread-safe.
const FileChecker& real_file_checker();

struct ProfileOptions {
  std::vector<std::string> overrides;       // "key=value" (as from --set), applied before validation
  std::optional<std::string> name;          // replaces the profile's name (--name)
  const FileChecker* files = nullptr;       // nullptr: the real filesystem
};

/// Whether NAME may name a VM or a snapshot: 1 to 63 letters, digits, ".", "_" or "-",
/// starting with a letter or digit (so it is always one safe path component).
bool is_valid_name(std::string_view name);

/// Parses and validates TOML `text` that came from `origin` (relative paths resolve against
/// its folder; diagnostics name it). Throws ProfileError listing every problem found.
Profile parse_profile(std::string_view text, const std::filesystem::path& origin,
                      const ProfileOptions& options = {});

/// Reads and parses the profile file at `path`. An unreadable file is a ProfileError too.
Profile load_profile(const std::filesystem::path& path, const ProfileOptions& options = {});

/// The profile as TOML with every default spelled out and absolute paths, such that
/// parse_profile(to_toml(p), p.source) == p.
std::string to_toml(const Profile& profile);

/// Parses "2GiB", "512M", "64MiB", "1T" (binary units; no unit means MiB) into bytes.
/// nullopt if the text is not such a size.
std::optional<std::uint64_t> parse_size(std::string_view text);

}  // namespace qvm
