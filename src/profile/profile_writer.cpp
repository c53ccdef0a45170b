#include <string>

#include "profile/size.hpp"
#include "profile/toml_text.hpp"
#include "qvm/profile.hpp"

namespace qvm {
namespace {

using profile::toml_quote;

// Writes `key = value` lines in a fixed order; values are already TOML.
class TomlLines {
 public:
  void header(std::string_view header) {
    text_ += '\n';
    text_ += header;
    text_ += '\n';
  }
  void raw(std::string_view key, std::string_view value) {
    text_ += key;
    text_ += " = ";
    text_ += value;
    text_ += '\n';
  }
  void string(std::string_view key, std::string_view value) { raw(key, toml_quote(value)); }
  void path(std::string_view key, const std::filesystem::path& value) {
    string(key, value.string());
  }
  void boolean(std::string_view key, bool value) { raw(key, value ? "true" : "false"); }
  void integer(std::string_view key, std::uint64_t value) { raw(key, std::to_string(value)); }
  void strings(std::string_view key, const std::vector<std::string>& values) {
    std::string array = "[";
    for (const std::string& value : values) {
      if (array.size() > 1) array += ", ";
      array += toml_quote(value);
    }
    raw(key, array + "]");
  }

  std::string take() { return std::move(text_); }

 private:
  std::string text_;
};

std::string forward_rule(const PortForward& rule) {
  return rule.protocol + ":" + rule.host_address + ":" + std::to_string(rule.host_port) + ":" +
         std::to_string(rule.guest_port);
}

}  // namespace

std::string to_toml(const Profile& profile) {
  TomlLines out;
  out.string("name", profile.name);
  if (profile.uuid) out.string("uuid", *profile.uuid);
  out.string("memory", profile::format_size(profile.memory_mib * profile::kMiB));
  out.integer("cpus", profile.cpus);
  out.string("machine", to_string(profile.machine));
  out.string("accel", to_string(profile.accel));
  out.string("cpu", profile.cpu);
  out.string("firmware", to_string(profile.firmware));
  out.boolean("agent", profile.agent);

  if (profile.ready) {
    out.header("[ready]");
    if (profile.ready->serial) out.string("serial", *profile.ready->serial);
    out.boolean("agent", profile.ready->agent);
    out.integer("timeout", static_cast<std::uint64_t>(profile.ready->timeout.count()));
  }
  if (profile.boot) {
    out.header("[boot]");
    out.path("kernel", profile.boot->kernel);
    if (profile.boot->initrd) out.path("initrd", *profile.boot->initrd);
    out.string("cmdline", profile.boot->cmdline);
  }
  for (const Disk& disk : profile.disks) {
    out.header("[[disk]]");
    out.path("path", disk.path);
    out.string("format", to_string(disk.format));
    out.string("bus", to_string(disk.bus));
    out.string("cache", to_string(disk.cache));
    if (disk.size_bytes) out.string("size", profile::format_size(*disk.size_bytes));
    if (disk.backing) out.path("backing", *disk.backing);
    out.boolean("readonly", disk.readonly);
  }
  // Keys that only one mode accepts are written only for that mode, so the text parses back.
  for (const Net& net : profile.nets) {
    out.header("[[net]]");
    out.string("mode", to_string(net.mode));
    if (net.mode == NetMode::none) continue;
    if (net.mode == NetMode::bridge) out.string("bridge", net.bridge);
    if (net.mode == NetMode::tap && !net.ifname.empty()) out.string("ifname", net.ifname);
    out.string("model", net.model);
    if (net.mac) out.string("mac", *net.mac);
    if (net.mode == NetMode::user) {
      std::vector<std::string> rules;
      for (const PortForward& rule : net.forward) rules.push_back(forward_rule(rule));
      out.strings("forward", rules);
    }
  }
  if (profile.cloud_init) {
    const CloudInit& cloud_init = *profile.cloud_init;
    out.header("[cloud_init]");
    if (cloud_init.hostname) out.string("hostname", *cloud_init.hostname);
    // user_data excludes the other two keys, so they are written only without it.
    if (cloud_init.user_data) {
      out.path("user_data", *cloud_init.user_data);
    } else {
      if (cloud_init.user) out.string("user", *cloud_init.user);
      out.strings("ssh_authorized_keys", cloud_init.ssh_authorized_keys);
    }
  }
  for (const Share& share : profile.shares) {
    out.header("[[share]]");
    out.path("path", share.path);
    out.string("tag", share.tag);
    out.boolean("readonly", share.readonly);
  }
  out.header("[shutdown]");
  out.integer("timeout", static_cast<std::uint64_t>(profile.shutdown.timeout.count()));
  out.string("restart", to_string(profile.shutdown.restart));
  // Only when set, so the resolved profile of a VM that never asked stays as it was.
  if (profile.logs != Logs{}) {
    out.header("[logs]");
    out.string("max_size", profile::format_size(profile.logs.max_size));
  }
  out.header("[qemu]");
  out.string("binary", profile.qemu.binary);
  out.strings("extra_args", profile.qemu.extra_args);
  out.boolean("sandbox", profile.qemu.sandbox);
  if (profile.qemu.user) out.string("user", *profile.qemu.user);
  return out.take();
}

}  // namespace qvm
