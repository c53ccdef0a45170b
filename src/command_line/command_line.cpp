#include "command_line/command_line.hpp"

#include <cstdint>
#include <cstdio>

#include "qvm/error.hpp"

namespace qvm {
namespace {

// Appends "-flag value" pairs and keeps the builder below readable.
class ArgvBuilder {
 public:
  explicit ArgvBuilder(std::string binary) { argv_.push_back(std::move(binary)); }
  void flag(std::string name) { argv_.push_back(std::move(name)); }
  void option(std::string name, std::string value) {
    argv_.push_back(std::move(name));
    argv_.push_back(std::move(value));
  }
  std::vector<std::string> take() { return std::move(argv_); }

 private:
  std::vector<std::string> argv_;
};

std::string on_off(bool value) { return value ? "on" : "off"; }

// cache= of -drive, expressed the -blockdev way: O_DIRECT on the file, flushes ignored or
// not, and whether the guest sees a volatile write cache.
struct CacheSettings {
  bool direct = false;
  bool no_flush = false;
  bool write_cache = true;
};

CacheSettings cache_settings(CacheMode mode) {
  switch (mode) {
    case CacheMode::none: return {true, false, true};
    case CacheMode::writeback: return {false, false, true};
    case CacheMode::writethrough: return {false, false, false};
    case CacheMode::directsync: return {true, false, false};
    case CacheMode::unsafe: return {false, true, true};
  }
  return {};
}

std::string cache_options(const CacheSettings& cache) {
  return ",cache.direct=" + on_off(cache.direct) + ",cache.no-flush=" + on_off(cache.no_flush);
}

// 64-bit FNV-1a: a stable, dependency-free hash for deriving MAC addresses.
std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

std::string nic_device(const Profile& profile, const Net& net) {
  if (profile.machine == Machine::microvm) return "virtio-net-device";
  if (net.model == "virtio") return "virtio-net-pci";
  return net.model;
}

std::string netdev_option(const Net& net, const std::string& id) {
  switch (net.mode) {
    case NetMode::user: {
      std::string value = "user,id=" + id;
      for (const auto& rule : net.forward) {
        value += ",hostfwd=" + rule.protocol + ":" + rule.host_address + ":" +
                 std::to_string(rule.host_port) + "-:" + std::to_string(rule.guest_port);
      }
      return value;
    }
    case NetMode::bridge:
      return "bridge,id=" + id + ",br=" + escape_option_value(net.bridge);
    case NetMode::tap: {
      // qvm never runs ifup scripts: a tap is set up by whoever owns the host network.
      std::string value = "tap,id=" + id + ",script=no,downscript=no";
      if (!net.ifname.empty()) value += ",ifname=" + escape_option_value(net.ifname);
      return value;
    }
    case NetMode::none: break;
  }
  return {};
}

}  // namespace

std::string disk_format_node(std::size_t index) { return "disk" + std::to_string(index) + "-format"; }
std::string disk_storage_node(std::size_t index) {
  return "disk" + std::to_string(index) + "-storage";
}
std::string disk_device_id(std::size_t index) { return "disk" + std::to_string(index); }

AccelChoice choose_accel(Accel wanted, const host::KvmStatus& kvm) {
  switch (wanted) {
    case Accel::tcg: return {Accel::tcg, std::nullopt};
    case Accel::kvm:
      if (!kvm.usable) {
        throw HostError("accel = \"kvm\" but KVM is not usable: " + kvm.problem + "; " + kvm.hint +
                        " (or set accel = \"tcg\" to emulate, much slower)");
      }
      return {Accel::kvm, std::nullopt};
    case Accel::automatic:
      if (kvm.usable) return {Accel::kvm, std::nullopt};
      return {Accel::tcg, "KVM is not usable (" + kvm.problem + "), running under TCG emulation, " +
                              "which is much slower; to fix: " + kvm.hint};
  }
  return {Accel::tcg, std::nullopt};
}

std::string escape_option_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

std::string shell_quote(std::string_view word) {
  if (word.empty()) return "''";
  bool plain = true;
  for (char c : word) {
    bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                std::string_view("@%_+=:,./-").find(c) != std::string_view::npos;
    if (!safe) {
      plain = false;
      break;
    }
  }
  if (plain) return std::string(word);
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += '\'';
  return out;
}

std::string shell_join(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& word : argv) {
    if (!out.empty()) out += ' ';
    out += shell_quote(word);
  }
  return out;
}

std::string default_mac(std::string_view uuid, std::size_t index) {
  std::uint64_t hash = fnv1a(std::string(uuid) + "/nic/" + std::to_string(index));
  char mac[18];
  std::snprintf(mac, sizeof mac, "52:54:00:%02x:%02x:%02x", static_cast<unsigned>(hash & 0xff),
                static_cast<unsigned>((hash >> 8) & 0xff), static_cast<unsigned>((hash >> 16) & 0xff));
  return mac;
}

CommandLine build_command_line(const Profile& profile, const host::HostInfo& host,
                               const RunPaths& paths, std::string_view uuid) {
  CommandLine result;
  AccelChoice accel = choose_accel(profile.accel, host.kvm);
  result.accel = accel.accel;
  if (accel.warning) result.warnings.push_back(*accel.warning);
  const bool microvm = profile.machine == Machine::microvm;

  ArgvBuilder qemu(host.qemu.binary.string());

  // Identity: the guest name (also the QEMU thread names) and a UUID stable per VM.
  qemu.option("-name", "guest=" + escape_option_value(profile.name) + ",debug-threads=on");
  qemu.option("-uuid", std::string(uuid));

  // Only what this argv asks for: no default devices, no host-wide config files.
  qemu.flag("-nodefaults");
  qemu.flag("-no-user-config");

  // Machine and accelerator. Guest memory stays out of QEMU core dumps.
  std::string machine(to_string(profile.machine));
  machine += ",dump-guest-core=off";
  if (!microvm) machine += ",vmport=off";
  if (profile.firmware == Firmware::uefi) machine += ",pflash0=firmware-code,pflash1=firmware-vars";
  qemu.option("-machine", machine);
  qemu.option("-accel", accel.accel == Accel::kvm ? "kvm" : "tcg");
  // "host" passes the CPU through under KVM; TCG cannot, "max" is its closest match.
  qemu.option("-cpu", profile.cpu == "host" && accel.accel == Accel::tcg ? "max" : profile.cpu);
  qemu.option("-smp", std::to_string(profile.cpus));
  qemu.option("-m", std::to_string(profile.memory_mib) + "M");

  // Headless; QEMU's own messages carry timestamps for qemu.log.
  qemu.option("-display", "none");
  qemu.option("-msg", "timestamp=on");

  // Seccomp: no obsolete syscalls, no setuid (unless QEMU must drop to [qemu] user, which
  // needs setuid/setgid once), no spawning (except the bridge helper), no scheduler or
  // affinity changes.
  if (profile.qemu.sandbox && host.qemu.has_sandbox) {
    bool bridged = false;
    for (const auto& net : profile.nets) bridged = bridged || net.mode == NetMode::bridge;
    qemu.option("-sandbox", std::string("on,obsolete=deny,elevateprivileges=") +
                                (profile.qemu.user ? "allow" : "deny") +
                                ",spawn=" + (bridged ? "allow" : "deny") + ",resourcecontrol=deny");
  }
  if (profile.qemu.user) qemu.option("-runas", *profile.qemu.user);
  qemu.option("-pidfile", paths.qemu_pidfile().string());
  // Start with the CPUs stopped: the supervisor connects its monitor first and then sends
  // `cont`, so no event of the guest's life is missed.
  qemu.flag("-S");

  // Two QMP monitors: the supervisor's own, and one for the CLI and embedders.
  qemu.option("-chardev", "socket,id=qmp-supervisor,path=" +
                              escape_option_value(paths.supervisor_qmp().string()) +
                              ",server=on,wait=off");
  qemu.option("-mon", "chardev=qmp-supervisor,mode=control");
  qemu.option("-chardev", "socket,id=qmp-client,path=" +
                              escape_option_value(paths.client_qmp().string()) +
                              ",server=on,wait=off");
  qemu.option("-mon", "chardev=qmp-client,mode=control");

  // Serial console on a socket for `qvm console`, everything also appended to serial.log.
  qemu.option("-chardev", "socket,id=serial0,path=" +
                              escape_option_value(paths.console_socket().string()) +
                              ",server=on,wait=off,logfile=" +
                              escape_option_value(paths.serial_log().string()) + ",logappend=on");
  qemu.option("-serial", "chardev:serial0");

  // Guest panics are reported as GUEST_PANICKED events (pvpanic sits on the ISA bus).
  if (!microvm) qemu.option("-device", "pvpanic");

  // UEFI: the shared read-only OVMF code and this VM's own variable store.
  if (profile.firmware == Firmware::uefi) {
    if (!host.uefi) {
      throw HostError("firmware = \"uefi\" needs OVMF, which was not found; install the ovmf "
                      "package (or set firmware = \"bios\")");
    }
    qemu.option("-blockdev", "driver=file,node-name=firmware-code-storage,filename=" +
                                 escape_option_value(host.uefi->code.string()) + ",read-only=on");
    qemu.option("-blockdev",
                "driver=raw,node-name=firmware-code,file=firmware-code-storage,read-only=on");
    qemu.option("-blockdev", "driver=file,node-name=firmware-vars-storage,filename=" +
                                 escape_option_value(paths.uefi_vars().string()));
    qemu.option("-blockdev", "driver=raw,node-name=firmware-vars,file=firmware-vars-storage");
  }

  // Direct kernel boot.
  if (profile.boot) {
    qemu.option("-kernel", profile.boot->kernel.string());
    if (profile.boot->initrd) qemu.option("-initrd", profile.boot->initrd->string());
    if (!profile.boot->cmdline.empty()) qemu.option("-append", profile.boot->cmdline);
  }

  // Disks: a storage node and a format node per disk (snapshots address the format node by
  // name), then the guest device on the disk's bus.
  bool scsi_controller = false;
  std::size_t ide_index = 0;
  for (std::size_t i = 0; i < profile.disks.size(); ++i) {
    const Disk& disk = profile.disks[i];
    const CacheSettings cache = cache_settings(disk.cache);
    const std::string readonly = disk.readonly ? ",read-only=on" : "";
    qemu.option("-blockdev", "driver=file,node-name=" + disk_storage_node(i) + ",filename=" +
                                 escape_option_value(disk.path.string()) + cache_options(cache) +
                                 readonly);
    qemu.option("-blockdev", "driver=" + std::string(to_string(disk.format)) + ",node-name=" +
                                 disk_format_node(i) + ",file=" + disk_storage_node(i) +
                                 cache_options(cache) + readonly);
    std::string common = ",drive=" + disk_format_node(i) + ",id=" + disk_device_id(i) +
                         ",serial=" + disk_device_id(i) + ",write-cache=" + on_off(cache.write_cache);
    if (!profile.boot && !microvm) common += ",bootindex=" + std::to_string(i + 1);
    switch (disk.bus) {
      case DiskBus::virtio:
        qemu.option("-device", (microvm ? "virtio-blk-device" : "virtio-blk-pci") + common);
        break;
      case DiskBus::scsi:
        if (!scsi_controller) {
          qemu.option("-device", "virtio-scsi-pci,id=scsi0");
          scsi_controller = true;
        }
        qemu.option("-device", "scsi-hd,bus=scsi0.0" + common);
        break;
      case DiskBus::nvme:
        qemu.option("-device", "nvme" + common);
        break;
      case DiskBus::ide:
        // q35's AHCI has one unit on each of six ports; pc's PIIX two units on two buses.
        if (profile.machine == Machine::pc) {
          qemu.option("-device", "ide-hd,bus=ide." + std::to_string(ide_index / 2) +
                                     ",unit=" + std::to_string(ide_index % 2) + common);
        } else {
          qemu.option("-device", "ide-hd,bus=ide." + std::to_string(ide_index) + common);
        }
        ++ide_index;
        break;
    }
  }

  // cloud-init's NoCloud seed (an ISO labelled "cidata" that the supervisor writes before
  // each start), read-only. A CD-ROM is what cloud images look for first; it goes on the
  // IDE/AHCI bus after the ide disks (validation keeps a slot free). microvm has no IDE,
  // so there it is a read-only virtio disk.
  if (profile.cloud_init) {
    qemu.option("-blockdev", "driver=file,node-name=" + std::string(kCloudInitStorageNode) +
                                 ",filename=" +
                                 escape_option_value(paths.cloud_init_seed().string()) +
                                 ",read-only=on");
    qemu.option("-blockdev", "driver=raw,node-name=" + std::string(kCloudInitNode) +
                                 ",file=" + std::string(kCloudInitStorageNode) + ",read-only=on");
    const std::string common =
        ",drive=" + std::string(kCloudInitNode) + ",id=" + std::string(kCloudInitNode);
    if (microvm) {
      qemu.option("-device", "virtio-blk-device" + common);
    } else if (profile.machine == Machine::pc) {
      qemu.option("-device", "ide-cd,bus=ide." + std::to_string(ide_index / 2) +
                                 ",unit=" + std::to_string(ide_index % 2) + common);
    } else {
      qemu.option("-device", "ide-cd,bus=ide." + std::to_string(ide_index) + common);
    }
  }

  // Shared folders over 9p. security_model=none: files the guest creates belong to the
  // user running QEMU with the modes the guest asked for, so the host user can use them
  // as is; the guest's chown is ignored instead of failing (passthrough would need root)
  // and no xattrs are needed on the host filesystem (mapped-xattr would need them, and
  // would hide the guest's modes from the host).
  for (std::size_t i = 0; i < profile.shares.size(); ++i) {
    const Share& share = profile.shares[i];
    const std::string id = "share" + std::to_string(i);
    qemu.option("-fsdev", "local,id=" + id + ",path=" + escape_option_value(share.path.string()) +
                              ",security_model=none" + (share.readonly ? ",readonly=on" : ""));
    qemu.option("-device", std::string(microvm ? "virtio-9p-device" : "virtio-9p-pci") +
                               ",id=" + id + ",fsdev=" + id + ",mount_tag=" + share.tag);
  }

  // Network: one backend and one NIC per [[net]], MACs stable per VM.
  std::size_t nic_index = 0;
  for (const Net& net : profile.nets) {
    if (net.mode == NetMode::none) continue;
    const std::string id = "net" + std::to_string(nic_index);
    qemu.option("-netdev", netdev_option(net, id));
    qemu.option("-device", nic_device(profile, net) + ",netdev=" + id + ",id=nic" +
                               std::to_string(nic_index) +
                               ",mac=" + net.mac.value_or(default_mac(uuid, nic_index)));
    ++nic_index;
  }

  // The guest agent's virtio-serial channel.
  if (profile.agent) {
    qemu.option("-chardev", "socket,id=agent,path=" +
                                escape_option_value(paths.agent_socket().string()) +
                                ",server=on,wait=off");
    qemu.option("-device", std::string(microvm ? "virtio-serial-device" : "virtio-serial-pci") +
                               ",id=virtio-serial0");
    qemu.option("-device",
                "virtserialport,bus=virtio-serial0.0,chardev=agent,name=org.qemu.guest_agent.0");
  }

  // The documented escape hatch, last so it can override anything above.
  std::vector<std::string> argv = qemu.take();
  argv.insert(argv.end(), profile.qemu.extra_args.begin(), profile.qemu.extra_args.end());
  result.argv = std::move(argv);
  return result;
}

}  // namespace qvm
