#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <variant>

#include "profile/checks.hpp"
#include "profile/reader.hpp"

// The readers of the arrays of tables: [[disk]], [[net]], [[share]].
namespace qvm::profile {

namespace fs = std::filesystem;

void ProfileReader::read_disks(const TableRef& top, Profile& profile) {
  std::map<fs::path, std::string> used_paths;
  std::size_t ide_disks = 0;
  for (const TableRef& table : get_table_array(top, "disk")) {
    check_keys(table);
    Disk disk;
    const toml::node* path_node = table.get("path");
    std::optional<fs::path> path;
    if (path_node == nullptr) {
      diagnostics_.report(table.table.source(), table.path("path"),
                          "missing; add path = \"FILE\", the disk image");
    } else {
      path = get_path(table, "path");
    }
    if (path) disk.path = *path;

    // Without a format, the file name decides, as qemu-img users expect of .img and .raw.
    const std::string extension = path ? lowercase(path->extension().string()) : "";
    const bool inferred_raw = extension == ".raw" || extension == ".img";
    const std::optional<DiskFormat> format = get_enum(table, "format", kDiskFormats);
    const bool format_known = format.has_value() || table.get("format") == nullptr;
    disk.format = format ? *format : (inferred_raw ? DiskFormat::raw : DiskFormat::qcow2);
    const std::optional<DiskBus> bus = get_enum(table, "bus", kDiskBuses);
    if (bus) disk.bus = *bus;
    if (auto cache = get_enum(table, "cache", kCacheModes)) disk.cache = *cache;
    disk.size_bytes = get_size(table, "size");
    if (table.get("backing") != nullptr) {
      if (format_known && disk.format == DiskFormat::raw) {
        diagnostics_.report(table.key_source("backing"), table.path("backing"),
                            format ? "only valid with format = \"qcow2\", not \"raw\""
                                   : "only valid with format = \"qcow2\"; this disk is raw "
                                     "because its path ends in " +
                                         toml_quote(path->extension().string()));
      } else {
        disk.backing = get_existing_file(table, "backing");
      }
    }
    if (auto readonly = get_bool(table, "readonly")) {
      disk.readonly = *readonly;
      if (*readonly && disk.bus == DiskBus::ide) {
        report(*table.get("readonly"), table.path("readonly"),
               "QEMU cannot attach a read-only disk to ide; use bus = \"virtio\" or \"scsi\"");
      }
    }

    if (path && !files_.exists(*path) && table.get("size") == nullptr &&
        table.get("backing") == nullptr) {
      report(*path_node, table.path("path"),
             toml_quote(path->string()) +
                 " does not exist; set size (such as size = \"20GiB\") to create it, or backing "
                 "to create it as an overlay");
    }
    if (path) {
      auto [used, inserted] = used_paths.emplace(*path, table.prefix);
      if (!inserted) {
        report(*path_node, table.path("path"),
               toml_quote(path->string()) + " is already used by " + used->second);
      }
    }
    if (bus && machine_known_) {
      if (profile.machine == Machine::microvm && *bus != DiskBus::virtio) {
        report(*table.get("bus"), table.path("bus"), "microvm supports only bus = \"virtio\"");
      } else if (*bus == DiskBus::ide && profile.machine != Machine::microvm) {
        ++ide_disks;
        const std::size_t limit = profile.machine == Machine::pc ? kMaxIdeDisksPc : kMaxIdeDisksQ35;
        if (ide_disks > limit) {
          report(*table.get("bus"), table.path("bus"),
                 std::string(to_string(profile.machine)) + " has only " + std::to_string(limit) +
                     " ide slots; use bus = \"virtio\" or \"scsi\" for this disk");
        }
      }
    }
    profile.disks.push_back(std::move(disk));
  }
}

void ProfileReader::read_nets(const TableRef& top, Profile& profile) {
  if (const toml::node* node = top.get("net")) {
    if (const toml::array* array = node->as_array(); array != nullptr && array->empty()) {
      report(*node, "net",
             "an empty list is ambiguous; for no network add [[net]] with mode = \"none\", "
             "or remove net for one user-mode NIC");
      return;
    }
  } else {
    profile.nets.emplace_back();
    return;
  }
  std::map<std::string, std::string> used_macs;
  std::vector<std::pair<PortForward, std::string>> used_ports;
  for (const TableRef& table : get_table_array(top, "net")) {
    check_keys(table);
    Net net;
    const std::optional<NetMode> mode = get_enum(table, "mode", kNetModes);
    const bool mode_known = mode.has_value() || table.get("mode") == nullptr;
    if (mode) net.mode = *mode;
    const std::string mode_name = toml_quote(to_string(net.mode));
    auto only_for = [&](std::string_view key, NetMode wanted) {
      diagnostics_.report(
          table.key_source(key), table.path(key),
          "only valid with mode = " + toml_quote(to_string(wanted)) + ", not " + mode_name);
    };

    if (mode_known && net.mode == NetMode::none) {
      const std::vector<std::string_view> known = section_keys("net");
      for (const auto& [key, value] : table.table) {
        const std::string_view name = key.str();
        if (name == "mode") continue;
        if (std::find(known.begin(), known.end(), name) == known.end()) continue;
        diagnostics_.report(key.source(), table.path(name),
                            "mode = \"none\" takes no other keys; remove it");
      }
      profile.nets.push_back(std::move(net));
      continue;
    }

    if (table.get("bridge") == nullptr) {
      if (mode_known && net.mode == NetMode::bridge) {
        diagnostics_.report(table.table.source(), table.path("bridge"),
                            "missing; mode = \"bridge\" needs the host bridge, such as "
                            "bridge = \"virbr0\"");
      }
    } else if (mode_known && net.mode != NetMode::bridge) {
      only_for("bridge", NetMode::bridge);
    } else if (auto bridge = interface_name(table, "bridge")) {
      net.bridge = *bridge;
    }
    if (table.get("ifname") != nullptr) {
      if (mode_known && net.mode != NetMode::tap) {
        only_for("ifname", NetMode::tap);
      } else if (auto ifname = interface_name(table, "ifname")) {
        net.ifname = *ifname;
      }
    }
    if (auto model = get_enum(table, "model", kNicModels)) {
      if (machine_known_ && profile.machine == Machine::microvm && *model != "virtio") {
        report(*table.get("model"), table.path("model"),
               "microvm supports only model = \"virtio\"");
      } else {
        net.model = std::string(*model);
      }
    }
    if (auto mac = get_string(table, "mac")) {
      const toml::node& mac_node = *table.get("mac");
      if (!is_mac_syntax(*mac)) {
        report(mac_node, table.path("mac"),
               toml_quote(*mac) +
                   " is not a MAC address; use six hex pairs such as \"52:54:00:12:34:56\"");
      } else if (!is_unicast_mac(*mac)) {
        report(mac_node, table.path("mac"),
               toml_quote(*mac) +
                   " is a multicast address; the first octet must be even, such as "
                   "\"52:54:00:12:34:56\"");
      } else {
        const std::string lower = lowercase(*mac);
        auto [used, inserted] = used_macs.emplace(lower, table.prefix);
        if (inserted) {
          net.mac = lower;
        } else {
          report(mac_node, table.path("mac"),
                 toml_quote(lower) + " is already used by " + used->second);
        }
      }
    }
    if (const toml::node* forward = table.get("forward")) {
      if (mode_known && net.mode != NetMode::user) {
        only_for("forward", NetMode::user);
      } else if (const toml::array* rules = forward->as_array()) {
        for (std::size_t i = 0; i < rules->size(); ++i) {
          const toml::node& rule_node = *rules->get(i);
          const std::string key = table.path("forward") + "[" + std::to_string(i) + "]";
          const std::optional<std::string> rule = string_value(rule_node, key);
          if (!rule) continue;
          auto read = read_forward(*rule);
          if (const auto* error = std::get_if<std::string>(&read)) {
            report(rule_node, key, *error);
            continue;
          }
          const PortForward& rule_value = std::get<PortForward>(read);
          const auto clash = std::find_if(
              used_ports.begin(), used_ports.end(),
              [&](const auto& used) { return forwards_collide(used.first, rule_value); });
          if (clash != used_ports.end()) {
            const auto host = [](const PortForward& f) {
              return f.protocol + " " + f.host_address + ":" + std::to_string(f.host_port);
            };
            report(
                rule_node, key,
                clash->first.host_address == rule_value.host_address
                    ? "host port " + host(rule_value) + " is already forwarded by " + clash->second
                    : "host port " + host(rule_value) + " overlaps " + host(clash->first) + " of " +
                          clash->second + " (0.0.0.0 is every address)");
            continue;
          }
          used_ports.emplace_back(rule_value, key);
          net.forward.push_back(rule_value);
        }
      } else {
        type_error(*forward, table.path("forward"),
                   expected_type(key_spec(table.section, "forward")));
      }
    }
    profile.nets.push_back(std::move(net));
  }
}

void ProfileReader::read_shares(const TableRef& top, Profile& profile) {
  std::map<std::string, std::string> used_tags;
  const std::vector<TableRef> tables = get_table_array(top, "share");
  for (std::size_t index = 0; index < tables.size(); ++index) {
    const TableRef& table = tables[index];
    check_keys(table);
    Share share;
    std::optional<fs::path> path;
    if (table.get("path") == nullptr) {
      diagnostics_.report(table.table.source(), table.path("path"),
                          "missing; add path = \"FOLDER\", the host folder to share");
    } else if ((path = get_path(table, "path"))) {
      const toml::node& path_node = *table.get("path");
      // "/srv/data/" names the folder /srv/data, whose name is the default tag.
      if (path->filename().empty() && path->has_parent_path() && *path != path->root_path()) {
        path = path->parent_path();
      }
      if (!files_.exists(*path)) {
        report(path_node, table.path("path"),
               toml_quote(path->string()) + " does not exist; create the folder first");
        path.reset();
      } else if (!files_.is_directory(*path)) {
        report(path_node, table.path("path"),
               toml_quote(path->string()) + " is not a folder; share the folder that holds it");
        path.reset();
      } else {
        share.path = *path;
      }
    }
    const toml::node* tag_node = table.get("tag");
    if (tag_node != nullptr) {
      if (auto tag = string_value(*tag_node, table.path("tag"))) {
        if (is_valid_mount_tag(*tag)) {
          share.tag = *tag;
        } else {
          report(*tag_node, table.path("tag"),
                 toml_quote(*tag) +
                     " is not a mount tag; use 1 to 31 letters, digits, \"_\" or \"-\"");
        }
      }
    } else if (path) {
      share.tag = default_mount_tag(*path, index);
    }
    if (!share.tag.empty()) {
      auto [used, inserted] = used_tags.emplace(share.tag, table.prefix);
      if (!inserted) {
        if (tag_node != nullptr) {
          report(*tag_node, table.path("tag"),
                 toml_quote(share.tag) + " is already used by " + used->second);
        } else {
          report(*table.get("path"), table.path("tag"),
                 toml_quote(share.tag) + ", the folder's name, is already the tag of " +
                     used->second + "; set a tag such as tag = \"" +
                     share.tag.substr(0, kMaxMountTag - 2) + "-2\"");
        }
      }
    }
    if (auto readonly = get_bool(table, "readonly")) share.readonly = *readonly;
    profile.shares.push_back(std::move(share));
  }
}

}  // namespace qvm::profile
