#include <gtest/gtest.h>

#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "qvm/profile.hpp"

// Every invalid profile below is checked against the exact text the user sees: each
// diagnostic with its place, the source line and the caret, in the order qvm prints them.

namespace qvm {
namespace {

namespace fs = std::filesystem;

// The only files that exist as far as these profiles are concerned.
class FakeFiles : public FileChecker {
 public:
  bool exists(const fs::path& path) const override {
    return paths_.count(path) > 0 || folders_.count(path) > 0;
  }
  bool is_directory(const fs::path& path) const override { return folders_.count(path) > 0; }

 private:
  std::set<fs::path> paths_{"/vm/vmlinuz",  "/vm/initrd.img", "/vm/base.qcow2",
                            "/vm/disk.qcow2", "/vm/data.img",  "/vm/user-data.yaml"};
  std::set<fs::path> folders_{"/vm", "/vm/src", "/srv/src", "/vm/cloud"};
};

struct ErrorCase {
  ErrorCase(const char* name, std::string text, std::vector<std::string> overrides,
            std::string expected, std::string origin = "/vm/dev.toml",
            std::optional<std::string> name_option = std::nullopt)
      : name(name),
        text(std::move(text)),
        overrides(std::move(overrides)),
        expected(std::move(expected)),
        origin(std::move(origin)),
        name_option(std::move(name_option)) {}

  const char* name;
  std::string text;
  std::vector<std::string> overrides;
  std::string expected;  // ProfileError::what()
  std::string origin;
  std::optional<std::string> name_option;
};

void PrintTo(const ErrorCase& error_case, std::ostream* out) {
  *out << error_case.name;
}

// What parse_profile throws for the case, or a note that it did not throw.
std::string error_of(const ErrorCase& error_case) {
  const FakeFiles files;
  ProfileOptions options;
  options.overrides = error_case.overrides;
  options.name = error_case.name_option;
  options.files = &files;
  try {
    parse_profile(error_case.text, error_case.origin, options);
  } catch (const ProfileError& error) {
    return error.what();
  }
  return "(no error)";
}

const ErrorCase kCases[] = {
    {"NameNotString",
     "name = 5\n",
     {},
     "/vm/dev.toml:1:8: name: expected string, got integer\n"
     "name = 5\n"
     "       ^"},
    {"CpusFloat",
     "cpus = 2.5\n",
     {},
     "/vm/dev.toml:1:8: cpus: expected integer, got float\n"
     "cpus = 2.5\n"
     "       ^"},
    {"MemoryFloat",
     "memory = 1.5\n",
     {},
     "/vm/dev.toml:1:10: memory: expected string with a unit or integer (MiB), got float\n"
     "memory = 1.5\n"
     "         ^"},
    {"MemoryBoolean",
     "memory = true\n",
     {},
     "/vm/dev.toml:1:10: memory: expected string with a unit or integer (MiB), got boolean\n"
     "memory = true\n"
     "         ^"},
    {"AgentString",
     "agent = \"yes\"\n",
     {},
     "/vm/dev.toml:1:9: agent: expected boolean, got string\n"
     "agent = \"yes\"\n"
     "        ^"},
    {"MachineInteger",
     "machine = 35\n",
     {},
     "/vm/dev.toml:1:11: machine: expected string (one of q35, pc, microvm), got integer\n"
     "machine = 35\n"
     "          ^"},
    {"UuidDate",
     "uuid = 1979-05-27\n",
     {},
     "/vm/dev.toml:1:8: uuid: expected string, got date\n"
     "uuid = 1979-05-27\n"
     "       ^"},
    {"CmdlineDateTime",
     "[boot]\n"
     "kernel = \"vmlinuz\"\n"
     "cmdline = 1979-05-27T07:32:00Z\n",
     {},
     "/vm/dev.toml:3:11: boot.cmdline: expected string, got date-time\n"
     "cmdline = 1979-05-27T07:32:00Z\n"
     "          ^"},
    {"NameTime",
     "name = 07:32:00\n",
     {},
     "/vm/dev.toml:1:8: name: expected string, got time\n"
     "name = 07:32:00\n"
     "       ^"},
    {"ReadyNotTable",
     "ready = 5\n",
     {},
     "/vm/dev.toml:1:9: ready: expected table ([ready]), got integer\n"
     "ready = 5\n"
     "        ^"},
    {"BootArray",
     "boot = [\"vmlinuz\"]\n",
     {},
     "/vm/dev.toml:1:8: boot: expected table ([boot]), got array\n"
     "boot = [\"vmlinuz\"]\n"
     "       ^"},
    {"DiskTable",
     "[disk]\n"
     "path = \"disk.qcow2\"\n",
     {},
     "/vm/dev.toml:1:1: disk: expected array of tables ([[disk]]), got table\n"
     "[disk]\n"
     "^"},
    {"DiskElementString",
     "disk = [\"disk.qcow2\"]\n",
     {},
     "/vm/dev.toml:1:9: disk[0]: expected table, got string\n"
     "disk = [\"disk.qcow2\"]\n"
     "        ^"},
    {"NetEmptyArray",
     "net = []\n",
     {},
     "/vm/dev.toml:1:7: net: an empty list is ambiguous; for no network add [[net]] with mode = "
     "\"none\", or remove net for one user-mode NIC\n"
     "net = []\n"
     "      ^"},
    {"ForwardNotArray",
     "[[net]]\n"
     "forward = \"2222:22\"\n",
     {},
     "/vm/dev.toml:2:11: net[0].forward: expected array of strings, got string\n"
     "forward = \"2222:22\"\n"
     "          ^"},
    {"ForwardElementInteger",
     "[[net]]\n"
     "forward = [\"2222:22\", 8080]\n",
     {},
     "/vm/dev.toml:2:23: net[0].forward[1]: expected string, got integer\n"
     "forward = [\"2222:22\", 8080]\n"
     "                      ^"},
    {"ExtraArgsString",
     "[qemu]\n"
     "extra_args = \"-S\"\n",
     {},
     "/vm/dev.toml:2:14: qemu.extra_args: expected array of strings, got string\n"
     "extra_args = \"-S\"\n"
     "             ^"},
    {"SandboxString",
     "[qemu]\n"
     "sandbox = \"yes\"\n",
     {},
     "/vm/dev.toml:2:11: qemu.sandbox: expected boolean, got string\n"
     "sandbox = \"yes\"\n"
     "          ^"},
    {"QemuUserRoot",
     "[qemu]\n"
     "user = \"root\"\n",
     {},
     "/vm/dev.toml:2:8: qemu.user: QEMU already runs as root without it; name an unprivileged "
     "user, e.g. \"nobody\"\n"
     "user = \"root\"\n"
     "       ^"},
    {"QemuUserWithAComma",
     "[qemu]\n"
     "user = \"qemu,chroot=/\"\n",
     {},
     "/vm/dev.toml:2:8: qemu.user: \"qemu,chroot=/\" is not a user name; use 1 to 32 lowercase "
     "letters, digits, \"_\" or \"-\", starting with a letter or \"_\"\n"
     "user = \"qemu,chroot=/\"\n"
     "       ^"},
    {"ReadonlyInteger",
     "[[disk]]\n"
     "path = \"disk.qcow2\"\n"
     "readonly = 1\n",
     {},
     "/vm/dev.toml:3:12: disk[0].readonly: expected boolean, got integer\n"
     "readonly = 1\n"
     "           ^"},
    {"MemoryDecimal",
     "memory = \"1.5GiB\"\n",
     {},
     "/vm/dev.toml:1:10: memory: \"1.5GiB\" is not a size; write a whole number and a binary unit (K, KiB, M, MiB, G, GiB, T or TiB), e.g. \"2GiB\" or \"1536MiB\"\n"
     "memory = \"1.5GiB\"\n"
     "         ^"},
    {"MemoryDecimalUnit",
     "memory = \"2GB\"\n",
     {},
     "/vm/dev.toml:1:10: memory: \"2GB\" is not a size; write a whole number and a binary unit (K, KiB, M, MiB, G, GiB, T or TiB), e.g. \"2GiB\" or \"1536MiB\"\n"
     "memory = \"2GB\"\n"
     "         ^"},
    {"MemoryNotWholeMiB",
     "memory = \"17000KiB\"\n",
     {},
     "/vm/dev.toml:1:10: memory: \"17000KiB\" is not a whole number of MiB\n"
     "memory = \"17000KiB\"\n"
     "         ^"},
    {"MemoryTooSmall",
     "memory = \"8MiB\"\n",
     {},
     "/vm/dev.toml:1:10: memory: \"8MiB\" is less than the minimum of 16MiB\n"
     "memory = \"8MiB\"\n"
     "         ^"},
    {"MemoryTooSmallInteger",
     "memory = 8\n",
     {},
     "/vm/dev.toml:1:10: memory: 8 MiB is less than the minimum of 16MiB\n"
     "memory = 8\n"
     "         ^"},
    {"MemoryTooLarge",
     "memory = \"2TiB\"\n",
     {},
     "/vm/dev.toml:1:10: memory: \"2TiB\" is more than the maximum of 1TiB\n"
     "memory = \"2TiB\"\n"
     "         ^"},
    {"MemoryHugeInteger",
     "memory = 99999999999999\n",
     {},
     "/vm/dev.toml:1:10: memory: 99999999999999 MiB is more than the maximum of 1TiB\n"
     "memory = 99999999999999\n"
     "         ^"},
    {"MemoryOverflowingString",
     "memory = \"99999999999999999999GiB\"\n",
     {},
     "/vm/dev.toml:1:10: memory: \"99999999999999999999GiB\" is more than the maximum of 1TiB\n"
     "memory = \"99999999999999999999GiB\"\n"
     "         ^"},
    {"MemoryNegative",
     "memory = -512\n",
     {},
     "/vm/dev.toml:1:10: memory: -512 MiB is less than the minimum of 16MiB\n"
     "memory = -512\n"
     "         ^"},
    {"DiskSizeZero",
     "[[disk]]\n"
     "path = \"new.qcow2\"\n"
     "size = \"0GiB\"\n",
     {},
     "/vm/dev.toml:3:8: disk[0].size: \"0GiB\" is too small; use a size above 0, such as "
     "\"20GiB\"\n"
     "size = \"0GiB\"\n"
     "       ^"},
    {"DiskSizeTooLarge",
     "[[disk]]\n"
     "path = \"new.qcow2\"\n"
     "size = \"65TiB\"\n",
     {},
     "/vm/dev.toml:3:8: disk[0].size: \"65TiB\" is more than the maximum of 64TiB\n"
     "size = \"65TiB\"\n"
     "       ^"},
    {"DiskSizeNegative",
     "[[disk]]\n"
     "path = \"new.qcow2\"\n"
     "size = -1\n",
     {},
     "/vm/dev.toml:3:8: disk[0].size: -1 MiB is too small; use a size above 0, such as \"20GiB\"\n"
     "size = -1\n"
     "       ^"},
    {"CpusZero",
     "cpus = 0\n",
     {},
     "/vm/dev.toml:1:8: cpus: 0 is out of range; use 1 to 255\n"
     "cpus = 0\n"
     "       ^"},
    {"CpusTooMany",
     "cpus = 256\n",
     {},
     "/vm/dev.toml:1:8: cpus: 256 is out of range; use 1 to 255\n"
     "cpus = 256\n"
     "       ^"},
    {"ReadyTimeoutZero",
     "[ready]\n"
     "timeout = 0\n",
     {},
     "/vm/dev.toml:2:11: ready.timeout: 0 is out of range; use 1 to 86400 (seconds)\n"
     "timeout = 0\n"
     "          ^"},
    {"ReadyTimeoutTooLong",
     "[ready]\n"
     "timeout = 86401\n",
     {},
     "/vm/dev.toml:2:11: ready.timeout: 86401 is out of range; use 1 to 86400 (seconds)\n"
     "timeout = 86401\n"
     "          ^"},
    {"ShutdownTimeoutTooLong",
     "[shutdown]\n"
     "timeout = 3601\n",
     {},
     "/vm/dev.toml:2:11: shutdown.timeout: 3601 is out of range; use 1 to 3600 (seconds)\n"
     "timeout = 3601\n"
     "          ^"},
    {"TopLevelTypo",
     "memroy = 1024\n",
     {},
     "/vm/dev.toml:1:1: memroy: unknown key \"memroy\"; did you mean \"memory\"?\n"
     "memroy = 1024\n"
     "^"},
    {"TopLevelNoMatch",
     "colour = \"red\"\n",
     {},
     "/vm/dev.toml:1:1: colour: unknown key \"colour\"; valid keys here: name, uuid, memory, cpus, "
     "machine, accel, cpu, firmware, agent, ready, boot, disk, net, cloud_init, share, shutdown, "
     "logs, qemu\n"
     "colour = \"red\"\n"
     "^"},
    {"TopLevelCaseOnly",
     "MEMORY = 2048\n",
     {},
     "/vm/dev.toml:1:1: MEMORY: unknown key \"MEMORY\"; did you mean \"memory\"?\n"
     "MEMORY = 2048\n"
     "^"},
    {"TableNameTypo",
     "[disks]\n"
     "path = \"disk.qcow2\"\n",
     {},
     "/vm/dev.toml:1:2: disks: unknown key \"disks\"; did you mean \"disk\"?\n"
     "[disks]\n"
     " ^"},
    {"ReadyTypo",
     "[ready]\n"
     "timout = 5\n",
     {},
     "/vm/dev.toml:2:1: ready.timout: unknown key \"timout\"; did you mean \"timeout\"?\n"
     "timout = 5\n"
     "^"},
    {"BootNoMatch",
     "[boot]\n"
     "kernel = \"vmlinuz\"\n"
     "append = \"quiet\"\n",
     {},
     "/vm/dev.toml:3:1: boot.append: unknown key \"append\"; valid keys here: kernel, initrd, "
     "cmdline\n"
     "append = \"quiet\"\n"
     "^"},
    {"DiskTypo",
     "[[disk]]\n"
     "path = \"disk.qcow2\"\n"
     "fromat = \"raw\"\n",
     {},
     "/vm/dev.toml:3:1: disk[0].fromat: unknown key \"fromat\"; did you mean \"format\"?\n"
     "fromat = \"raw\"\n"
     "^"},
    {"DiskNoMatch",
     "[[disk]]\n"
     "path = \"disk.qcow2\"\n"
     "discard = true\n",
     {},
     "/vm/dev.toml:3:1: disk[0].discard: unknown key \"discard\"; valid keys here: path, format, "
     "bus, cache, size, backing, readonly\n"
     "discard = true\n"
     "^"},
    {"NetTypo",
     "[[net]]\n"
     "mode = \"bridge\"\n"
     "brigde = \"virbr0\"\n"
     "bridge = \"virbr0\"\n",
     {},
     "/vm/dev.toml:3:1: net[0].brigde: unknown key \"brigde\"; did you mean \"bridge\"?\n"
     "brigde = \"virbr0\"\n"
     "^"},
    {"ShutdownNoMatch",
     "[shutdown]\n"
     "signal = \"TERM\"\n",
     {},
     "/vm/dev.toml:2:1: shutdown.signal: unknown key \"signal\"; valid keys here: timeout, "
     "restart\n"
     "signal = \"TERM\"\n"
     "^"},
    {"LogsUnknownKey",
     "[logs]\n"
     "maxsize = \"1MiB\"\n",
     {},
     "/vm/dev.toml:2:1: logs.maxsize: unknown key \"maxsize\"; did you mean \"max_size\"?\n"
     "maxsize = \"1MiB\"\n"
     "^"},
    {"LogsMaxSizeNotASize",
     "[logs]\n"
     "max_size = \"8MB\"\n",
     {},
     "/vm/dev.toml:2:12: logs.max_size: \"8MB\" is not a size; write a whole number and a binary unit (K, KiB, M, MiB, G, GiB, T or TiB), e.g. \"2GiB\" or \"1536MiB\"\n"
     "max_size = \"8MB\"\n"
     "           ^"},
    {"LogsMaxSizeTooSmall",
     "[logs]\n"
     "max_size = \"4KiB\"\n",
     {},
     "/vm/dev.toml:2:12: logs.max_size: \"4KiB\" is less than the minimum of 64KiB\n"
     "max_size = \"4KiB\"\n"
     "           ^"},
    {"LogsMaxSizeZero",
     "[logs]\n"
     "max_size = 0\n",
     {},
     "/vm/dev.toml:2:12: logs.max_size: 0 MiB is less than the minimum of 64KiB\n"
     "max_size = 0\n"
     "           ^"},
    {"LogsMaxSizeTooLarge",
     "[logs]\n"
     "max_size = \"2TiB\"\n",
     {},
     "/vm/dev.toml:2:12: logs.max_size: \"2TiB\" is more than the maximum of 1TiB\n"
     "max_size = \"2TiB\"\n"
     "           ^"},
    {"LogsMaxSizeWrongType",
     "[logs]\n"
     "max_size = true\n",
     {},
     "/vm/dev.toml:2:12: logs.max_size: expected string with a unit or integer (MiB), got boolean\n"
     "max_size = true\n"
     "           ^"},
    {"LogsNotATable",
     "logs = \"8MiB\"\n",
     {},
     "/vm/dev.toml:1:8: logs: expected table ([logs]), got string\n"
     "logs = \"8MiB\"\n"
     "       ^"},
    {"QemuTypo",
     "[qemu]\n"
     "extra-args = [\"-S\"]\n",
     {},
     "/vm/dev.toml:2:1: qemu.extra-args: unknown key \"extra-args\"; did you mean \"extra_args\"?\n"
     "extra-args = [\"-S\"]\n"
     "^"},
    {"QuotedUnknownKey",
     "\"a b\" = 1\n",
     {},
     "/vm/dev.toml:1:1: \"a b\": unknown key \"a b\"; valid keys here: name, uuid, memory, cpus, "
     "machine, accel, cpu, firmware, agent, ready, boot, disk, net, cloud_init, share, shutdown, "
     "logs, qemu\n"
     "\"a b\" = 1\n"
     "^"},
    {"MachineTypo",
     "machine = \"q53\"\n",
     {},
     "/vm/dev.toml:1:11: machine: \"q53\" is not a machine type; use one of q35, pc, microvm (did "
     "you mean \"q35\"?)\n"
     "machine = \"q53\"\n"
     "          ^"},
    {"AccelUnknown",
     "accel = \"whpx\"\n",
     {},
     "/vm/dev.toml:1:9: accel: \"whpx\" is not an accelerator; use one of auto, kvm, tcg\n"
     "accel = \"whpx\"\n"
     "        ^"},
    {"FirmwareTypo",
     "firmware = \"efi\"\n",
     {},
     "/vm/dev.toml:1:12: firmware: \"efi\" is not a firmware; use one of bios, uefi (did you mean "
     "\"uefi\"?)\n"
     "firmware = \"efi\"\n"
     "           ^"},
    {"FormatTypo",
     "[[disk]]\n"
     "path = \"disk.qcow2\"\n"
     "format = \"qcow\"\n",
     {},
     "/vm/dev.toml:3:10: disk[0].format: \"qcow\" is not a disk format; use one of qcow2, raw (did "
     "you mean \"qcow2\"?)\n"
     "format = \"qcow\"\n"
     "         ^"},
    {"BusUnknown",
     "[[disk]]\n"
     "path = \"disk.qcow2\"\n"
     "bus = \"sata\"\n",
     {},
     "/vm/dev.toml:3:7: disk[0].bus: \"sata\" is not a disk bus; use one of virtio, scsi, nvme, "
     "ide\n"
     "bus = \"sata\"\n"
     "      ^"},
    {"CacheTypo",
     "[[disk]]\n"
     "path = \"disk.qcow2\"\n"
     "cache = \"write-back\"\n",
     {},
     "/vm/dev.toml:3:9: disk[0].cache: \"write-back\" is not a cache mode; use one of none, "
     "writeback, writethrough, unsafe, directsync (did you mean \"writeback\"?)\n"
     "cache = \"write-back\"\n"
     "        ^"},
    {"NetModeTypo",
     "[[net]]\n"
     "mode = \"bridged\"\n",
     {},
     "/vm/dev.toml:2:8: net[0].mode: \"bridged\" is not a network mode; use one of user, bridge, "
     "tap, none (did you mean \"bridge\"?)\n"
     "mode = \"bridged\"\n"
     "       ^"},
    {"RestartUnknown",
     "[shutdown]\n"
     "restart = \"never\"\n",
     {},
     "/vm/dev.toml:2:11: shutdown.restart: \"never\" is not a restart policy; use one of no, "
     "on-failure, always\n"
     "restart = \"never\"\n"
     "          ^"},
    {"NicModelTypo",
     "[[net]]\n"
     "model = \"e1000x\"\n",
     {},
     "/vm/dev.toml:2:9: net[0].model: \"e1000x\" is not a NIC model; use one of virtio, e1000, "
     "e1000e, rtl8139, vmxnet3 (did you mean \"e1000\"?)\n"
     "model = \"e1000x\"\n"
     "        ^"},
    {"EnumCaseOnly",
     "machine = \"Q35\"\n",
     {},
     "/vm/dev.toml:1:11: machine: \"Q35\" is not a machine type; use one of q35, pc, microvm (did "
     "you mean \"q35\"?)\n"
     "machine = \"Q35\"\n"
     "          ^"},
    {"NameWithSpace",
     "name = \"my vm\"\n",
     {},
     "/vm/dev.toml:1:8: name: \"my vm\" is not a valid name; use 1 to 63 letters, digits, \".\", "
     "\"_\" or \"-\", starting with a letter or digit\n"
     "name = \"my vm\"\n"
     "       ^"},
    {"NameTooLong",
     "name = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n",
     {},
     "/vm/dev.toml:1:8: name: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" "
     "is not a valid name; use 1 to 63 letters, digits, \".\", \"_\" or \"-\", starting with a "
     "letter or digit\n"
     "name = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n"
     "       ^"},
    {"NameLeadingDash",
     "name = \"-dev\"\n",
     {},
     "/vm/dev.toml:1:8: name: \"-dev\" is not a valid name; use 1 to 63 letters, digits, \".\", "
     "\"_\" or \"-\", starting with a letter or digit\n"
     "name = \"-dev\"\n"
     "       ^"},
    {"NameFromBadFileName",
     "cpus = 2\n",
     {},
     "/vm/my profile.toml: name: missing, and the file name \"my profile\" is not a valid name; "
     "add name = \"...\" (use 1 to 63 letters, digits, \".\", \"_\" or \"-\", starting with a "
     "letter or digit)",
     "/vm/my profile.toml"},
    {"NameMissingWithoutFile",
     "cpus = 2\n",
     {},
     "<profile>: name: missing; add name = \"...\" (use 1 to 63 letters, digits, \".\", \"_\" or "
     "\"-\", starting with a letter or digit)",
     ""},
    {"NameOptionInvalid",
     "cpus = 2\n",
     {},
     "--name: name: \"bad/name\" is not a valid name; use 1 to 63 letters, digits, \".\", \"_\" or "
     "\"-\", starting with a letter or digit",
     "/vm/dev.toml",
     "bad/name"},
    {"UuidTooShort",
     "uuid = \"123\"\n",
     {},
     "/vm/dev.toml:1:8: uuid: \"123\" is not a UUID; use the form "
     "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (hex digits)\n"
     "uuid = \"123\"\n"
     "       ^"},
    {"UuidNotHex",
     "uuid = \"6f1c2a3b-4d5e-8f60-9a1b-2c3d4e5f607g\"\n",
     {},
     "/vm/dev.toml:1:8: uuid: \"6f1c2a3b-4d5e-8f60-9a1b-2c3d4e5f607g\" is not a UUID; use the form "
     "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (hex digits)\n"
     "uuid = \"6f1c2a3b-4d5e-8f60-9a1b-2c3d4e5f607g\"\n"
     "       ^"},
    {"CpuModelWithSpace",
     "cpu = \"Skylake Client\"\n",
     {},
     "/vm/dev.toml:1:7: cpu: \"Skylake Client\" is not a CPU model; use \"host\" or a QEMU model "
     "such as \"Skylake-Client,+avx\" (letters, digits and . _ + = , -)\n"
     "cpu = \"Skylake Client\"\n"
     "      ^"},
    {"MacTooShort",
     "[[net]]\n"
     "mac = \"52:54:00:12:34\"\n",
     {},
     "/vm/dev.toml:2:7: net[0].mac: \"52:54:00:12:34\" is not a MAC address; use six hex pairs "
     "such as \"52:54:00:12:34:56\"\n"
     "mac = \"52:54:00:12:34\"\n"
     "      ^"},
    {"MacMulticast",
     "[[net]]\n"
     "mac = \"01:00:5e:00:00:01\"\n",
     {},
     "/vm/dev.toml:2:7: net[0].mac: \"01:00:5e:00:00:01\" is a multicast address; the first octet "
     "must be even, such as \"52:54:00:12:34:56\"\n"
     "mac = \"01:00:5e:00:00:01\"\n"
     "      ^"},
    {"MacDuplicate",
     "[[net]]\n"
     "mac = \"52:54:00:aa:bb:cc\"\n"
     "[[net]]\n"
     "mac = \"52:54:00:AA:BB:CC\"\n",
     {},
     "/vm/dev.toml:4:7: net[1].mac: \"52:54:00:aa:bb:cc\" is already used by net[0]\n"
     "mac = \"52:54:00:AA:BB:CC\"\n"
     "      ^"},
    {"ForwardWithoutGuestPort",
     "[[net]]\n"
     "forward = [\"2222\"]\n",
     {},
     "/vm/dev.toml:2:12: net[0].forward[0]: \"2222\" is not a port forward; use "
     "\"[tcp:|udp:][ADDRESS:]HOSTPORT:GUESTPORT\", such as \"tcp:2222:22\"\n"
     "forward = [\"2222\"]\n"
     "           ^"},
    {"ForwardUnknownProtocol",
     "[[net]]\n"
     "forward = [\"sctp:127.0.0.1:2222:22\"]\n",
     {},
     "/vm/dev.toml:2:12: net[0].forward[0]: \"sctp:127.0.0.1:2222:22\": unknown protocol \"sctp\"; "
     "use tcp or udp\n"
     "forward = [\"sctp:127.0.0.1:2222:22\"]\n"
     "           ^"},
    {"ForwardHostName",
     "[[net]]\n"
     "forward = [\"localhost:2222:22\"]\n",
     {},
     "/vm/dev.toml:2:12: net[0].forward[0]: \"localhost:2222:22\": \"localhost\" is neither tcp, "
     "udp nor an IPv4 address\n"
     "forward = [\"localhost:2222:22\"]\n"
     "           ^"},
    {"ForwardBadAddress",
     "[[net]]\n"
     "forward = [\"tcp:127.0.0.256:2222:22\"]\n",
     {},
     "/vm/dev.toml:2:12: net[0].forward[0]: \"tcp:127.0.0.256:2222:22\": \"127.0.0.256\" is not an "
     "IPv4 address; use one such as 127.0.0.1, or 0.0.0.0 for all interfaces\n"
     "forward = [\"tcp:127.0.0.256:2222:22\"]\n"
     "           ^"},
    {"ForwardPortZero",
     "[[net]]\n"
     "forward = [\"0:22\"]\n",
     {},
     "/vm/dev.toml:2:12: net[0].forward[0]: \"0:22\": port 0 is out of range; use 1 to 65535\n"
     "forward = [\"0:22\"]\n"
     "           ^"},
    {"ForwardPortTooLarge",
     "[[net]]\n"
     "forward = [\"tcp:2222:65536\"]\n",
     {},
     "/vm/dev.toml:2:12: net[0].forward[0]: \"tcp:2222:65536\": port 65536 is out of range; use 1 "
     "to 65535\n"
     "forward = [\"tcp:2222:65536\"]\n"
     "           ^"},
    {"ForwardPortName",
     "[[net]]\n"
     "forward = [\"tcp:ssh:22\"]\n",
     {},
     "/vm/dev.toml:2:12: net[0].forward[0]: \"tcp:ssh:22\": \"ssh\" is not a port number; use 1 to "
     "65535\n"
     "forward = [\"tcp:ssh:22\"]\n"
     "           ^"},
    {"ForwardDuplicateAcrossNets",
     "[[net]]\n"
     "forward = [\"2222:22\"]\n"
     "[[net]]\n"
     "forward = [\"tcp:127.0.0.1:2222:2022\"]\n",
     {},
     "/vm/dev.toml:4:12: net[1].forward[0]: host port tcp 127.0.0.1:2222 is already forwarded by "
     "net[0].forward[0]\n"
     "forward = [\"tcp:127.0.0.1:2222:2022\"]\n"
     "           ^"},
    {"ForwardDuplicateWildcard",
     "[[net]]\n"
     "forward = [\"0.0.0.0:8080:80\", \"udp:8080:80\", \"8080:8080\"]\n",
     {},
     "/vm/dev.toml:2:46: net[0].forward[2]: host port tcp 127.0.0.1:8080 overlaps tcp 0.0.0.0:8080 "
     "of net[0].forward[0] (0.0.0.0 is every address)\n"
     "forward = [\"0.0.0.0:8080:80\", \"udp:8080:80\", \"8080:8080\"]\n"
     "                                             ^"},
    {"DiskPathDuplicate",
     "[[disk]]\n"
     "path = \"disk.qcow2\"\n"
     "[[disk]]\n"
     "path = \"./sub/../disk.qcow2\"\n",
     {},
     "/vm/dev.toml:4:8: disk[1].path: \"/vm/disk.qcow2\" is already used by disk[0]\n"
     "path = \"./sub/../disk.qcow2\"\n"
     "       ^"},
    {"KernelMissingFile",
     "[boot]\n"
     "kernel = \"bzImage\"\n",
     {},
     "/vm/dev.toml:2:10: boot.kernel: \"/vm/bzImage\" does not exist\n"
     "kernel = \"bzImage\"\n"
     "         ^"},
    {"InitrdMissingFile",
     "[boot]\n"
     "kernel = \"vmlinuz\"\n"
     "initrd = \"/boot/initrd\"\n",
     {},
     "/vm/dev.toml:3:10: boot.initrd: \"/boot/initrd\" does not exist\n"
     "initrd = \"/boot/initrd\"\n"
     "         ^"},
    {"BackingMissingFile",
     "[[disk]]\n"
     "path = \"overlay.qcow2\"\n"
     "backing = \"gone.qcow2\"\n",
     {},
     "/vm/dev.toml:3:11: disk[0].backing: \"/vm/gone.qcow2\" does not exist\n"
     "backing = \"gone.qcow2\"\n"
     "          ^"},
    {"DiskMissingWithoutSize",
     "[[disk]]\n"
     "path = \"new.qcow2\"\n",
     {},
     "/vm/dev.toml:2:8: disk[0].path: \"/vm/new.qcow2\" does not exist; set size (such as size = "
     "\"20GiB\") to create it, or backing to create it as an overlay\n"
     "path = \"new.qcow2\"\n"
     "       ^"},
    {"EmptyPath",
     "[[disk]]\n"
     "path = \"\"\n",
     {},
     "/vm/dev.toml:2:8: disk[0].path: the path is empty\n"
     "path = \"\"\n"
     "       ^"},
    {"BootWithoutKernel",
     "name = \"dev\"\n"
     "\n"
     "[boot]\n"
     "cmdline = \"quiet\"\n",
     {},
     "/vm/dev.toml:3:1: boot.kernel: missing; add kernel = \"PATH\", the kernel image to boot\n"
     "[boot]\n"
     "^"},
    {"DiskWithoutPath",
     "[[disk]]\n"
     "size = \"20GiB\"\n",
     {},
     "/vm/dev.toml:1:1: disk[0].path: missing; add path = \"FILE\", the disk image\n"
     "[[disk]]\n"
     "^"},
    {"BridgeWithoutBridge",
     "[[net]]\n"
     "mode = \"bridge\"\n",
     {},
     "/vm/dev.toml:1:1: net[0].bridge: missing; mode = \"bridge\" needs the host bridge, such as "
     "bridge = \"virbr0\"\n"
     "[[net]]\n"
     "^"},
    {"BridgeOnUserMode",
     "[[net]]\n"
     "bridge = \"virbr0\"\n",
     {},
     "/vm/dev.toml:2:1: net[0].bridge: only valid with mode = \"bridge\", not \"user\"\n"
     "bridge = \"virbr0\"\n"
     "^"},
    {"ForwardOnTap",
     "[[net]]\n"
     "mode = \"tap\"\n"
     "forward = [\"2222:22\"]\n",
     {},
     "/vm/dev.toml:3:1: net[0].forward: only valid with mode = \"user\", not \"tap\"\n"
     "forward = [\"2222:22\"]\n"
     "^"},
    {"IfnameOnBridge",
     "[[net]]\n"
     "mode = \"bridge\"\n"
     "bridge = \"virbr0\"\n"
     "ifname = \"tap0\"\n",
     {},
     "/vm/dev.toml:4:1: net[0].ifname: only valid with mode = \"tap\", not \"bridge\"\n"
     "ifname = \"tap0\"\n"
     "^"},
    {"BackingOnRaw",
     "[[disk]]\n"
     "path = \"overlay.qcow2\"\n"
     "format = \"raw\"\n"
     "backing = \"base.qcow2\"\n",
     {},
     "/vm/dev.toml:4:1: disk[0].backing: only valid with format = \"qcow2\", not \"raw\"\n"
     "backing = \"base.qcow2\"\n"
     "^"},
    {"BackingOnImgFile",
     "[[disk]]\n"
     "path = \"overlay.img\"\n"
     "backing = \"base.qcow2\"\n",
     {},
     "/vm/dev.toml:3:1: disk[0].backing: only valid with format = \"qcow2\"; this disk is raw "
     "because its path ends in \".img\"\n"
     "backing = \"base.qcow2\"\n"
     "^"},
    {"ReadyAgentWithoutAgent",
     "[ready]\n"
     "agent = true\n",
     {},
     "/vm/dev.toml:2:9: ready.agent: waiting for the guest agent needs its channel; set agent = "
     "true at the top level\n"
     "agent = true\n"
     "        ^"},
    {"MicrovmWithoutBoot",
     "machine = \"microvm\"\n",
     {},
     "/vm/dev.toml:1:11: machine: microvm cannot boot from a disk; add a [boot] table with a "
     "kernel\n"
     "machine = \"microvm\"\n"
     "          ^"},
    {"MicrovmUefi",
     "machine = \"microvm\"\n"
     "firmware = \"uefi\"\n"
     "[boot]\n"
     "kernel = \"vmlinuz\"\n",
     {},
     "/vm/dev.toml:2:12: firmware: microvm supports only firmware = \"bios\"\n"
     "firmware = \"uefi\"\n"
     "           ^"},
    {"MicrovmScsiDisk",
     "machine = \"microvm\"\n"
     "[boot]\n"
     "kernel = \"vmlinuz\"\n"
     "[[disk]]\n"
     "path = \"disk.qcow2\"\n"
     "bus = \"scsi\"\n",
     {},
     "/vm/dev.toml:6:7: disk[0].bus: microvm supports only bus = \"virtio\"\n"
     "bus = \"scsi\"\n"
     "      ^"},
    {"MicrovmE1000",
     "machine = \"microvm\"\n"
     "[boot]\n"
     "kernel = \"vmlinuz\"\n"
     "[[net]]\n"
     "model = \"e1000\"\n",
     {},
     "/vm/dev.toml:5:9: net[0].model: microvm supports only model = \"virtio\"\n"
     "model = \"e1000\"\n"
     "        ^"},
    {"IdeReadonly",
     "[[disk]]\n"
     "path = \"disk.qcow2\"\n"
     "bus = \"ide\"\n"
     "readonly = true\n",
     {},
     "/vm/dev.toml:4:12: disk[0].readonly: QEMU cannot attach a read-only disk to ide; use bus = "
     "\"virtio\" or \"scsi\"\n"
     "readonly = true\n"
     "           ^"},
    {"TooManyIdeDisksOnPc",
     "machine = \"pc\"\n"
     "[[disk]]\n"
     "path = \"d0.qcow2\"\n"
     "size = 1024\n"
     "bus = \"ide\"\n"
     "[[disk]]\n"
     "path = \"d1.qcow2\"\n"
     "size = 1024\n"
     "bus = \"ide\"\n"
     "[[disk]]\n"
     "path = \"d2.qcow2\"\n"
     "size = 1024\n"
     "bus = \"ide\"\n"
     "[[disk]]\n"
     "path = \"d3.qcow2\"\n"
     "size = 1024\n"
     "bus = \"ide\"\n"
     "[[disk]]\n"
     "path = \"d4.qcow2\"\n"
     "size = 1024\n"
     "bus = \"ide\"\n",
     {},
     "/vm/dev.toml:21:7: disk[4].bus: pc has only 4 ide slots; use bus = \"virtio\" or \"scsi\" "
     "for this disk\n"
     "bus = \"ide\"\n"
     "      ^"},
    {"ModeNoneWithModel",
     "[[net]]\n"
     "mode = \"none\"\n"
     "model = \"virtio\"\n",
     {},
     "/vm/dev.toml:3:1: net[0].model: mode = \"none\" takes no other keys; remove it\n"
     "model = \"virtio\"\n"
     "^"},
    {"BridgeNameTooLong",
     "[[net]]\n"
     "mode = \"bridge\"\n"
     "bridge = \"averyveryverylongbridge\"\n",
     {},
     "/vm/dev.toml:3:10: net[0].bridge: \"averyveryverylongbridge\" is not an interface name; use "
     "1 to 15 characters without \"/\", \":\" or spaces\n"
     "bridge = \"averyveryverylongbridge\"\n"
     "         ^"},
    {"TapNameWithColon",
     "[[net]]\n"
     "mode = \"tap\"\n"
     "ifname = \"tap:0\"\n",
     {},
     "/vm/dev.toml:3:10: net[0].ifname: \"tap:0\" is not an interface name; use 1 to 15 characters "
     "without \"/\", \":\" or spaces\n"
     "ifname = \"tap:0\"\n"
     "         ^"},
    {"SerialRegexInvalid",
     "[ready]\n"
     "serial = \"login(\"\n",
     {},
     "/vm/dev.toml:2:10: ready.serial: \"login(\" is not a valid regular expression: Mismatched "
     "'(' and ')' in regular expression\n"
     "serial = \"login(\"\n"
     "         ^"},
    {"SerialEmpty",
     "[ready]\n"
     "serial = \"\"\n",
     {},
     "/vm/dev.toml:2:10: ready.serial: an empty pattern matches at once; give one such as "
     "\"login:\" or remove serial\n"
     "serial = \"\"\n"
     "         ^"},
    {"QemuBinaryEmpty",
     "[qemu]\n"
     "binary = \"\"\n",
     {},
     "/vm/dev.toml:2:10: qemu.binary: the binary is empty; use a name looked up in PATH, such as "
     "\"qemu-system-x86_64\", or a path\n"
     "binary = \"\"\n"
     "         ^"},
    {"CmdlineNewline",
     "[boot]\n"
     "kernel = \"vmlinuz\"\n"
     "cmdline = \"console=ttyS0\\nquiet\"\n",
     {},
     "/vm/dev.toml:3:11: boot.cmdline: contains a control character (U+000A); remove it\n"
     "cmdline = \"console=ttyS0\\nquiet\"\n"
     "          ^"},
    {"NameTab",
     "name = \"de\tv\"\n",
     {},
     "/vm/dev.toml:1:8: name: contains a control character (U+0009); remove it\n"
     "name = \"de\tv\"\n"
     "       ^"},
    {"ExtraArgNul",
     "[qemu]\n"
     "extra_args = [\"-S\", \"a\\u0000b\"]\n",
     {},
     "/vm/dev.toml:2:21: qemu.extra_args[1]: contains a control character (U+0000); remove it\n"
     "extra_args = [\"-S\", \"a\\u0000b\"]\n"
     "                    ^"},
    {"PathDelete",
     "[[disk]]\n"
     "path = \"disk\\u007F.qcow2\"\n",
     {},
     "/vm/dev.toml:2:8: disk[0].path: contains a control character (U+007F); remove it\n"
     "path = \"disk\\u007F.qcow2\"\n"
     "       ^"},
    {"CaretAfterTabs",
     "[[disk]]\n"
     "\tpath = \"disk.qcow2\"\n"
     "\tcache =\t\"fast\"\n",
     {},
     "/vm/dev.toml:3:10: disk[0].cache: \"fast\" is not a cache mode; use one of none, writeback, "
     "writethrough, unsafe, directsync\n"
     "\tcache =\t\"fast\"\n"
     "\t       \t^"},
    {"CaretAfterUtf8",
     "[qemu]\n"
     "extra_args = [\"été\", 1]\n",
     {},
     "/vm/dev.toml:2:22: qemu.extra_args[1]: expected string, got integer\n"
     "extra_args = [\"été\", 1]\n"
     "                     ^"},
    {"SyntaxUnterminatedString",
     "name = \"dev\n"
     "cpus = 2\n",
     {},
     "/vm/dev.toml:1:12: Error while parsing string: unescaped control characters other than TAB "
     "(U+0009) are explicitly prohibited\n"
     "name = \"dev\n"
     "           ^"},
    {"SyntaxDuplicateKey",
     "cpus = 2\n"
     "cpus = 4\n",
     {},
     "/vm/dev.toml:2:8: Error while parsing key-value pair: cannot redefine existing integer "
     "'cpus'\n"
     "cpus = 4\n"
     "       ^"},
    {"SyntaxIntegerOverflow",
     "memory = 99999999999999999999\n",
     {},
     "/vm/dev.toml:1:30: Error while parsing decimal integer: '99999999999999999999' is not "
     "representable in 64 bits\n"
     "memory = 99999999999999999999\n"
     "                             ^"},
    {"SyntaxMissingValue",
     "memory =\n",
     {},
     "/vm/dev.toml:1:9: Error while parsing key-value pair: expected value, saw '\\n'\n"
     "memory =\n"
     "        ^"},
    {"SyntaxTableRedefined",
     "[disk]\n"
     "[[disk]]\n",
     {},
     "/vm/dev.toml:2:1: Error while parsing table header: cannot redefine existing table 'disk' as "
     "array-of-tables\n"
     "[[disk]]\n"
     "^"},
    {"OverrideWithoutEquals",
     "cpus = 2\n",
     {"memory"},
     "--set:1:1: expected KEY=VALUE, such as memory=4GiB, got \"memory\"\n"
     "memory\n"
     "^"},
    {"OverrideEmptyKey",
     "cpus = 2\n",
     {"=4"},
     "--set:1:1: expected a key before \"=\", such as memory=4GiB\n"
     "=4\n"
     "^"},
    {"OverrideBadIndex",
     "cpus = 2\n",
     {"disk[x].size=1"},
     "--set:1:6: malformed key \"disk[x].size\"; write a dotted path such as boot.cmdline or "
     "disk[0].size\n"
     "disk[x].size=1\n"
     "     ^"},
    {"OverrideIndexPastEnd",
     "[[disk]]\n"
     "path = \"disk.qcow2\"\n",
     {"disk[2].size=1"},
     "--set:1:5: disk[2]: index 2 is out of range; disk has 1 entry, so use 0 to 1 (1 adds one)\n"
     "disk[2].size=1\n"
     "    ^"},
    {"OverrideIntoInteger",
     "memory = 2048\n",
     {"memory.size=1"},
     "--set:1:8: memory.size: memory is an integer, not a table\n"
     "memory.size=1\n"
     "       ^"},
    {"OverrideIndexIntoTable",
     "[boot]\n"
     "kernel = \"vmlinuz\"\n",
     {"boot[0].kernel=x"},
     "--set:1:5: boot[0]: boot is a table, not an array\n"
     "boot[0].kernel=x\n"
     "    ^"},
    {"OverrideArrayWithoutIndex",
     "[[disk]]\n"
     "path = \"disk.qcow2\"\n",
     {"disk.size=1GiB"},
     "--set:1:6: disk.size: disk is an array; pick an entry, such as disk[0].size\n"
     "disk.size=1GiB\n"
     "     ^"},
    {"OverrideBadValue",
     "cpus = 2\n",
     {"cpus=2", "memory=2gb"},
     "--set:2:8: memory: \"2gb\" is not a size; write a whole number and a binary unit (K, KiB, M, MiB, G, GiB, T or TiB), e.g. \"2GiB\" or \"1536MiB\"\n"
     "memory=2gb\n"
     "       ^"},
    {"OverrideUnknownKey",
     "[[disk]]\n"
     "path = \"disk.qcow2\"\n",
     {"disk[0].fromat=raw"},
     "--set:1:9: disk[0].fromat: unknown key \"fromat\"; did you mean \"format\"?\n"
     "disk[0].fromat=raw\n"
     "        ^"},
    {"OverrideWrongType",
     "cpus = 2\n",
     {"cpus=true"},
     "--set:1:6: cpus: expected integer, got boolean\n"
     "cpus=true\n"
     "     ^"},
    {"OverrideCreatesBootWithoutKernel",
     "cpus = 2\n",
     {"boot.cmdline=quiet"},
     "--set:1:1: boot.kernel: missing; add kernel = \"PATH\", the kernel image to boot\n"
     "boot.cmdline=quiet\n"
     "^"},
    {"OverrideAppendsDiskWithoutPath",
     "cpus = 2\n",
     {"disk[0].size=20GiB"},
     "--set:1:5: disk[0].path: missing; add path = \"FILE\", the disk image\n"
     "disk[0].size=20GiB\n"
     "    ^"},
    {"OverrideArrayElement",
     "cpus = 2\n",
     {"qemu.extra_args = [\"-S\", 1]"},
     "--set:1:26: qemu.extra_args[1]: expected string, got integer\n"
     "qemu.extra_args = [\"-S\", 1]\n"
     "                         ^"},
    {"OverrideControlCharacter",
     "cpus = 2\n",
     {"cpu=\"a\\u0007b\""},
     "--set:1:5: cpu: contains a control character (U+0007); remove it\n"
     "cpu=\"a\\u0007b\"\n"
     "    ^"},
    {"OverrideMalformedPath",
     "cpus = 2\n",
     {"disk..size=1"},
     "--set:1:6: malformed key \"disk..size\"; write a dotted path such as boot.cmdline or "
     "disk[0].size\n"
     "disk..size=1\n"
     "     ^"},
    {"OverrideHugeIndex",
     "cpus = 2\n",
     {"disk[99999999999999999999].size=1"},
     "--set:1:5: disk[99999999999999999999]: index 99999999999999999999 is out of range; disk has "
     "0 entries, so use 0 to 0 (0 adds one)\n"
     "disk[99999999999999999999].size=1\n"
     "    ^"},
    {"OverrideWithNewlineShownSafely",
     "cpus = 2\n",
     {"cpu=Skylake\nquiet"},
     "--set:1:5: cpu: contains a control character (U+000A); remove it\n"
     "cpu=Skylake?quiet\n"
     "    ^"},
    {"SyntaxEscapeInComment",
     "cpus = 2 # \033[31mred\n",
     {},
     "/vm/dev.toml:1:12: Error while parsing comment: control characters other than TAB (U+0009) "
     "are explicitly prohibited in comments\n"
     "cpus = 2 # ?[31mred\n"
     "           ^"},
    // --- [cloud_init] ---
    {"CloudInitNotATable",
     "cloud_init = true\n",
     {},
     "/vm/dev.toml:1:14: cloud_init: expected table ([cloud_init]), got boolean\n"
     "cloud_init = true\n"
     "             ^"},
    {"CloudInitTypo",
     "[cloud_init]\nhostnmae = \"box\"\n",
     {},
     "/vm/dev.toml:2:1: cloud_init.hostnmae: unknown key \"hostnmae\"; did you mean \"hostname\"?\n"
     "hostnmae = \"box\"\n"
     "^"},
    {"CloudInitTopLevelTypo",
     "[cloudinit]\nuser = \"me\"\n",
     {},
     "/vm/dev.toml:1:2: cloudinit: unknown key \"cloudinit\"; did you mean \"cloud_init\"?\n"
     "[cloudinit]\n"
     " ^"},
    {"CloudInitHostnameUnderscore",
     "[cloud_init]\nhostname = \"my_box\"\n",
     {},
     "/vm/dev.toml:2:12: cloud_init.hostname: \"my_box\" is not a host name; use letters, digits "
     "and \"-\" in labels of 1 to 63 characters separated by dots, none starting or ending with "
     "\"-\"\n"
     "hostname = \"my_box\"\n"
     "           ^"},
    {"CloudInitHostnameEmptyLabel",
     "[cloud_init]\nhostname = \"box..example.org\"\n",
     {},
     "/vm/dev.toml:2:12: cloud_init.hostname: \"box..example.org\" is not a host name; use letters, "
     "digits and \"-\" in labels of 1 to 63 characters separated by dots, none starting or ending "
     "with \"-\"\n"
     "hostname = \"box..example.org\"\n"
     "           ^"},
    {"CloudInitUserUppercase",
     "[cloud_init]\nuser = \"Alice\"\n",
     {},
     "/vm/dev.toml:2:8: cloud_init.user: \"Alice\" is not a user name; use 1 to 32 lowercase "
     "letters, digits, \"_\" or \"-\", starting with a letter or \"_\"\n"
     "user = \"Alice\"\n"
     "       ^"},
    {"CloudInitUserRoot",
     "[cloud_init]\nuser = \"root\"\n",
     {},
     "/vm/dev.toml:2:8: cloud_init.user: \"root\" exists in every image; name a new user, or leave "
     "user out to give the keys to the image's default user\n"
     "user = \"root\"\n"
     "       ^"},
    {"CloudInitKeysNotArray",
     "[cloud_init]\nssh_authorized_keys = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA me\"\n",
     {},
     "/vm/dev.toml:2:23: cloud_init.ssh_authorized_keys: expected array of strings, got string\n"
     "ssh_authorized_keys = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA me\"\n"
     "                      ^"},
    {"CloudInitKeyNotAKey",
     "[cloud_init]\nssh_authorized_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA me\", "
     "\"~/.ssh/id_ed25519.pub\"]\n",
     {},
     "/vm/dev.toml:2:67: cloud_init.ssh_authorized_keys[1]: is not an SSH public key; paste one "
     "line of a .pub file, such as \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... me@host\"\n"
     "ssh_authorized_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA me\", \"~/.ssh/id_ed25519.pub\"]\n"
     "                                                                  ^"},
    {"CloudInitKeyInteger",
     "[cloud_init]\nssh_authorized_keys = [42]\n",
     {},
     "/vm/dev.toml:2:24: cloud_init.ssh_authorized_keys[0]: expected string, got integer\n"
     "ssh_authorized_keys = [42]\n"
     "                       ^"},
    {"CloudInitKeyWithNewline",
     "[cloud_init]\nssh_authorized_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA me\\nssh-rsa\"]\n",
     {},
     "/vm/dev.toml:2:24: cloud_init.ssh_authorized_keys[0]: contains a control character "
     "(U+000A); remove it\n"
     "ssh_authorized_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA me\\nssh-rsa\"]\n"
     "                       ^"},
    {"CloudInitUserDataMissing",
     "[cloud_init]\nuser_data = \"cloud/user-data\"\n",
     {},
     "/vm/dev.toml:2:13: cloud_init.user_data: \"/vm/cloud/user-data\" does not exist\n"
     "user_data = \"cloud/user-data\"\n"
     "            ^"},
    {"CloudInitUserDataEmpty",
     "[cloud_init]\nuser_data = \"\"\n",
     {},
     "/vm/dev.toml:2:13: cloud_init.user_data: the path is empty\n"
     "user_data = \"\"\n"
     "            ^"},
    {"CloudInitUserDataWithUserAndKeys",
     "[cloud_init]\n"
     "user = \"alice\"\n"
     "ssh_authorized_keys = []\n"
     "user_data = \"user-data.yaml\"\n",
     {},
     "/vm/dev.toml:2:1: cloud_init.user: cannot be combined with user_data, which is the whole "
     "user-data; write it in that file instead\n"
     "user = \"alice\"\n"
     "^\n"
     "/vm/dev.toml:3:1: cloud_init.ssh_authorized_keys: cannot be combined with user_data, which "
     "is the whole user-data; write it in that file instead\n"
     "ssh_authorized_keys = []\n"
     "^"},
    {"CloudInitNeedsAnIdeSlotOnPc",
     "machine = \"pc\"\n"
     "[[disk]]\npath = \"disk.qcow2\"\nbus = \"ide\"\n"
     "[[disk]]\npath = \"base.qcow2\"\nbus = \"ide\"\n"
     "[[disk]]\npath = \"data.img\"\nbus = \"ide\"\n"
     "[[disk]]\npath = \"a.qcow2\"\nsize = 1\nbus = \"ide\"\n"
     "[cloud_init]\n",
     {},
     "/vm/dev.toml:15:1: cloud_init: the seed CD-ROM needs an ide slot, but the 4 ide disks fill "
     "all 4 of pc; move a disk to bus = \"virtio\" or \"scsi\"\n"
     "[cloud_init]\n"
     "^"},
    {"CloudInitOverrideBadHostname",
     "",
     {"cloud_init.hostname=-box"},
     "--set:1:21: cloud_init.hostname: \"-box\" is not a host name; use letters, digits and \"-\" "
     "in labels of 1 to 63 characters separated by dots, none starting or ending with \"-\"\n"
     "cloud_init.hostname=-box\n"
     "                    ^"},
    // --- [[share]] ---
    {"ShareAsTable",
     "[share]\npath = \"src\"\n",
     {},
     "/vm/dev.toml:1:1: share: expected array of tables ([[share]]), got table\n"
     "[share]\n"
     "^"},
    {"SharePathMissing",
     "[[share]]\ntag = \"code\"\n",
     {},
     "/vm/dev.toml:1:1: share[0].path: missing; add path = \"FOLDER\", the host folder to share\n"
     "[[share]]\n"
     "^"},
    {"SharePathDoesNotExist",
     "[[share]]\npath = \"nope\"\n",
     {},
     "/vm/dev.toml:2:8: share[0].path: \"/vm/nope\" does not exist; create the folder first\n"
     "path = \"nope\"\n"
     "       ^"},
    {"SharePathIsAFile",
     "[[share]]\npath = \"disk.qcow2\"\n",
     {},
     "/vm/dev.toml:2:8: share[0].path: \"/vm/disk.qcow2\" is not a folder; share the folder that "
     "holds it\n"
     "path = \"disk.qcow2\"\n"
     "       ^"},
    {"ShareTagWithSpace",
     "[[share]]\npath = \"src\"\ntag = \"my code\"\n",
     {},
     "/vm/dev.toml:3:7: share[0].tag: \"my code\" is not a mount tag; use 1 to 31 letters, digits, "
     "\"_\" or \"-\"\n"
     "tag = \"my code\"\n"
     "      ^"},
    {"ShareTagTooLong",
     "[[share]]\npath = \"src\"\ntag = \"" + std::string(32, 't') + "\"\n",
     {},
     "/vm/dev.toml:3:7: share[0].tag: \"" + std::string(32, 't') +
         "\" is not a mount tag; use 1 to 31 letters, digits, \"_\" or \"-\"\n"
         "tag = \"" + std::string(32, 't') + "\"\n"
         "      ^"},
    {"ShareTagUsedTwice",
     "[[share]]\npath = \"src\"\ntag = \"code\"\n[[share]]\npath = \"/vm\"\ntag = \"code\"\n",
     {},
     "/vm/dev.toml:6:7: share[1].tag: \"code\" is already used by share[0]\n"
     "tag = \"code\"\n"
     "      ^"},
    {"ShareDefaultTagsClash",
     "[[share]]\npath = \"src\"\n[[share]]\npath = \"/srv/src\"\n",
     {},
     "/vm/dev.toml:4:8: share[1].tag: \"src\", the folder's name, is already the tag of share[0]; "
     "set a tag such as tag = \"src-2\"\n"
     "path = \"/srv/src\"\n"
     "       ^"},
    {"ShareReadonlyString",
     "[[share]]\npath = \"src\"\nreadonly = \"yes\"\n",
     {},
     "/vm/dev.toml:3:12: share[0].readonly: expected boolean, got string\n"
     "readonly = \"yes\"\n"
     "           ^"},
    {"ShareUnknownKey",
     "[[share]]\npath = \"src\"\nmode = \"ro\"\n",
     {},
     "/vm/dev.toml:3:1: share[0].mode: unknown key \"mode\"; valid keys here: path, tag, readonly\n"
     "mode = \"ro\"\n"
     "^"},
    {"OverrideShareMissingFolder",
     "",
     {"share[0].path=/no/such/folder"},
     "--set:1:15: share[0].path: \"/no/such/folder\" does not exist; create the folder first\n"
     "share[0].path=/no/such/folder\n"
     "              ^"},
    {"OverrideNotUtf8",
     "cpus = 2\n",
     {"cpu=a\377b"},
     "--set:1:5: the value is not valid UTF-8\n"
     "cpu=a\377b\n"
     "    ^"},
};

class ProfileErrorsTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ProfileErrorsTest, ReportsExactMessage) {
  EXPECT_EQ(GetParam().expected, error_of(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(, ProfileErrorsTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<ErrorCase>& info) {
                           return std::string(info.param.name);
                         });

TEST_F(ProfileErrorsTest, ReportsAllThreeProblemsInFileOrder) {
  // The tables are in reverse alphabetical order, unlike the order keys are checked in.
  ErrorCase error_case{"ThreeProblems",
                       "name = \"dev\"\n"
                       "[shutdown]\n"
                       "restart = \"sometimes\"\n"
                       "[[disk]]\n"
                       "path = \"disk.qcow2\"\n"
                       "format = \"vmdk\"\n"
                       "[boot]\n"
                       "kernel = \"vmlinuz\"\n"
                       "initrd = 7\n",
                       {},
                       ""};
  EXPECT_EQ(
      "/vm/dev.toml:3:11: shutdown.restart: \"sometimes\" is not a restart policy; use one of no, "
      "on-failure, always\n"
      "restart = \"sometimes\"\n"
      "          ^\n"
      "/vm/dev.toml:6:10: disk[0].format: \"vmdk\" is not a disk format; use one of qcow2, raw\n"
      "format = \"vmdk\"\n"
      "         ^\n"
      "/vm/dev.toml:9:10: boot.initrd: expected string, got integer\n"
      "initrd = 7\n"
      "         ^",
      error_of(error_case));
}

TEST_F(ProfileErrorsTest, ThreeProblemsComeInFileOrderWithTheirPlaces) {
  const FakeFiles files;
  ProfileOptions options;
  options.files = &files;
  try {
    parse_profile("[qemu]\nbinary = 7\n[[net]]\nmode = \"tun\"\n[ready]\nagent = \"no\"\n",
                  "/vm/dev.toml", options);
    FAIL() << "no ProfileError";
  } catch (const ProfileError& error) {
    const std::vector<ProfileDiagnostic>& d = error.diagnostics();
    ASSERT_EQ(3u, d.size());
    EXPECT_EQ("qemu.binary", d[0].key);
    EXPECT_EQ(2, d[0].line);
    EXPECT_EQ(10, d[0].column);
    EXPECT_EQ("binary = 7", d[0].source_line);
    EXPECT_EQ("net[0].mode", d[1].key);
    EXPECT_EQ(4, d[1].line);
    EXPECT_EQ(8, d[1].column);
    EXPECT_EQ(
        "\"tun\" is not a network mode; use one of user, bridge, tap, none (did you mean "
        "\"tap\"?)",
        d[1].message);
    EXPECT_EQ("ready.agent", d[2].key);
    EXPECT_EQ(6, d[2].line);
    EXPECT_EQ("/vm/dev.toml", d[2].file);
    EXPECT_EQ(d[0].to_string() + "\n" + d[1].to_string() + "\n" + d[2].to_string(), error.what());
  }
}

TEST_F(ProfileErrorsTest, OverrideDiagnosticsNameTheOverride) {
  const FakeFiles files;
  ProfileOptions options;
  options.files = &files;
  options.overrides = {"cpus=2", "memory = 9MiB"};
  try {
    parse_profile("cpus = 999\n", "/vm/dev.toml", options);
    FAIL() << "no ProfileError";
  } catch (const ProfileError& error) {
    ASSERT_EQ(1u, error.diagnostics().size());  // cpus = 999 was overridden
    const ProfileDiagnostic& d = error.diagnostics()[0];
    EXPECT_EQ("--set", d.file);
    EXPECT_EQ(2, d.line);
    EXPECT_EQ(10, d.column);
    EXPECT_EQ("memory", d.key);
    EXPECT_EQ("memory = 9MiB", d.source_line);
  }
}

TEST_F(ProfileErrorsTest, OneDiagnosticPerKey) {
  // disk[1].path is both missing on disk and a duplicate: only the first problem is shown.
  const FakeFiles files;
  ProfileOptions options;
  options.files = &files;
  try {
    parse_profile("[[disk]]\npath = \"new.qcow2\"\n[[disk]]\npath = \"new.qcow2\"\n",
                  "/vm/dev.toml", options);
    FAIL() << "no ProfileError";
  } catch (const ProfileError& error) {
    ASSERT_EQ(2u, error.diagnostics().size());
    EXPECT_EQ("disk[0].path", error.diagnostics()[0].key);
    EXPECT_EQ("disk[1].path", error.diagnostics()[1].key);
    EXPECT_EQ(error.diagnostics()[0].message, error.diagnostics()[1].message);
  }
}

}  // namespace
}  // namespace qvm
