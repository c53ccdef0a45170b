#include <algorithm>
#include <chrono>
#include <string>

#include "profile/checks.hpp"
#include "profile/reader.hpp"
#include "profile/serial_pattern.hpp"

// The readers of the plain tables: [ready], [boot], [cloud_init], [shutdown], [logs], [qemu].
namespace qvm::profile {

Ready ProfileReader::read_ready(const TableRef& table, const Profile& profile) {
  check_keys(table);
  Ready ready;
  if (const toml::node* node = table.get("serial")) {
    if (auto pattern = string_value(*node, "ready.serial", true)) {
      if (pattern->empty()) {
        report(*node, "ready.serial",
               "an empty pattern matches at once; give one such as \"login:\" or remove serial");
      } else {
        if (auto problem = regex_problem(*pattern)) {
          report(*node, "ready.serial",
                 toml_quote(*pattern) + " is not a valid regular expression: " + *problem);
        } else {
          ready.serial = *pattern;
        }
      }
    }
  }
  if (auto agent = get_bool(table, "agent")) {
    ready.agent = *agent;
    if (*agent && agent_known_ && !profile.agent) {
      report(*table.get("agent"), "ready.agent",
             "waiting for the guest agent needs its channel; set agent = true at the top level");
    }
  }
  if (auto timeout = get_integer(table, "timeout")) {
    ready.timeout = std::chrono::seconds(*timeout);
  }
  return ready;
}

Boot ProfileReader::read_boot(const TableRef& table) {
  check_keys(table);
  Boot boot;
  if (table.get("kernel") == nullptr) {
    diagnostics_.report(table.table.source(), "boot.kernel",
                        "missing; add kernel = \"PATH\", the kernel image to boot");
  } else if (auto kernel = get_existing_file(table, "kernel")) {
    boot.kernel = *kernel;
  }
  if (auto initrd = get_existing_file(table, "initrd")) boot.initrd = *initrd;
  if (auto cmdline = get_string(table, "cmdline")) boot.cmdline = *cmdline;
  return boot;
}

CloudInit ProfileReader::read_cloud_init(const TableRef& table, const Profile& profile) {
  check_keys(table);
  CloudInit cloud_init;
  if (auto hostname = get_string(table, "hostname")) {
    if (is_valid_hostname(*hostname)) {
      cloud_init.hostname = *hostname;
    } else {
      report(*table.get("hostname"), table.path("hostname"),
             toml_quote(*hostname) +
                 " is not a host name; use letters, digits and \"-\" in labels of 1 to 63 "
                 "characters separated by dots, none starting or ending with \"-\"");
    }
  }
  cloud_init.user = get_user_name(table,
                                  "\"root\" exists in every image; name a new user, or leave "
                                  "user out to give the keys to the image's default user");
  if (const toml::node* keys = table.get("ssh_authorized_keys")) {
    if (const toml::array* array = keys->as_array()) {
      for (std::size_t i = 0; i < array->size(); ++i) {
        const toml::node& key_node = *array->get(i);
        const std::string key = table.path("ssh_authorized_keys") + "[" + std::to_string(i) + "]";
        const std::optional<std::string> text = string_value(key_node, key);
        if (!text) continue;
        if (is_ssh_public_key(*text)) {
          cloud_init.ssh_authorized_keys.push_back(*text);
        } else {
          report(key_node, key,
                 "is not an SSH public key; paste one line of a .pub file, such as "
                 "\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... me@host\"");
        }
      }
    } else {
      type_error(*keys, table.path("ssh_authorized_keys"),
                 expected_type(key_spec(table.section, "ssh_authorized_keys")));
    }
  }
  if (table.get("user_data") != nullptr) {
    if (auto user_data = get_path(table, "user_data")) {
      if (files_.exists(*user_data)) {
        cloud_init.user_data = *user_data;
      } else {
        report(*table.get("user_data"), table.path("user_data"),
               toml_quote(user_data->string()) + " does not exist");
      }
    }
    // The file is the whole user-data: qvm would have nowhere to put these.
    for (std::string_view key : {"user", "ssh_authorized_keys"}) {
      if (table.get(key) == nullptr) continue;
      diagnostics_.report(table.key_source(key), table.path(key),
                          "cannot be combined with user_data, which is the whole user-data; "
                          "write it in that file instead");
    }
  }
  if (machine_known_ && profile.machine != Machine::microvm) {
    const std::size_t ide_disks = static_cast<std::size_t>(
        std::count_if(profile.disks.begin(), profile.disks.end(),
                      [](const Disk& disk) { return disk.bus == DiskBus::ide; }));
    const std::size_t limit = profile.machine == Machine::pc ? kMaxIdeDisksPc : kMaxIdeDisksQ35;
    if (ide_disks >= limit) {
      diagnostics_.report(table.table.source(), "cloud_init",
                          "the seed CD-ROM needs an ide slot, but the " +
                              std::to_string(ide_disks) + " ide disks fill all " +
                              std::to_string(limit) + " of " +
                              std::string(to_string(profile.machine)) +
                              "; move a disk to bus = \"virtio\" or \"scsi\"");
    }
  }
  return cloud_init;
}

Shutdown ProfileReader::read_shutdown(const TableRef& table) {
  check_keys(table);
  Shutdown shutdown;
  if (auto timeout = get_integer(table, "timeout")) {
    shutdown.timeout = std::chrono::seconds(*timeout);
  }
  if (auto restart = get_enum(table, "restart", kRestartPolicies)) {
    shutdown.restart = *restart;
  }
  return shutdown;
}

Logs ProfileReader::read_logs(const TableRef& table) {
  check_keys(table);
  Logs logs;
  if (auto bytes = get_size(table, "max_size")) logs.max_size = *bytes;
  return logs;
}

QemuOptions ProfileReader::read_qemu(const TableRef& table) {
  check_keys(table);
  QemuOptions qemu;
  if (auto binary = get_string(table, "binary")) {
    if (binary->empty()) {
      report(*table.get("binary"), "qemu.binary",
             "the binary is empty; use a name looked up in PATH, such as "
             "\"qemu-system-x86_64\", or a path");
    } else if (binary->find('/') == std::string::npos) {
      qemu.binary = *binary;
    } else {
      qemu.binary = resolve(*table.get("binary"), *binary).string();
    }
  }
  if (const toml::node* node = table.get("extra_args")) {
    if (const toml::array* args = node->as_array()) {
      for (std::size_t i = 0; i < args->size(); ++i) {
        const std::string key = "qemu.extra_args[" + std::to_string(i) + "]";
        if (auto arg = string_value(*args->get(i), key)) qemu.extra_args.push_back(*arg);
      }
    } else {
      type_error(*node, "qemu.extra_args", expected_type(key_spec(table.section, "extra_args")));
    }
  }
  if (auto sandbox = get_bool(table, "sandbox")) qemu.sandbox = *sandbox;
  qemu.user = get_user_name(table,
                            "QEMU already runs as root without it; name an unprivileged user, "
                            "e.g. \"nobody\"");
  return qemu;
}

}  // namespace qvm::profile
