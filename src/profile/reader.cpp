#include "profile/reader.hpp"

#include <string>
#include <utility>

#include "profile/checks.hpp"
#include "profile/size.hpp"

namespace qvm::profile {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kNameRule =
    "use 1 to 63 letters, digits, \".\", \"_\" or \"-\", starting with a letter or digit";

}  // namespace

ProfileReader::ProfileReader(Diagnostics& diagnostics, const FileChecker& files, fs::path base_dir)
    : diagnostics_(diagnostics), files_(files), base_dir_(std::move(base_dir)) {}

Profile ProfileReader::validate(const toml::table& document, const fs::path& origin,
                                const ProfileOptions& options) {
  Profile profile;
  const TableRef top{document, "", ""};
  check_keys(top);

  read_name(top, origin, options, profile);
  if (auto uuid = get_string(top, "uuid")) {
    if (is_canonical_uuid(*uuid)) {
      profile.uuid = lowercase(*uuid);
    } else {
      report(*top.get("uuid"), "uuid",
             toml_quote(*uuid) +
                 " is not a UUID; use the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (hex digits)");
    }
  }
  if (auto bytes = get_size(top, "memory")) profile.memory_mib = *bytes / kMiB;
  if (auto cpus = get_integer(top, "cpus")) {
    profile.cpus = static_cast<unsigned>(*cpus);
  }
  const std::optional<Machine> machine = get_enum(top, "machine", kMachines);
  machine_known_ = machine.has_value() || top.get("machine") == nullptr;
  if (machine) profile.machine = *machine;
  if (auto accel = get_enum(top, "accel", kAccels)) profile.accel = *accel;
  if (auto cpu = get_string(top, "cpu")) {
    if (is_valid_cpu_model(*cpu)) {
      profile.cpu = *cpu;
    } else {
      report(*top.get("cpu"), "cpu",
             toml_quote(*cpu) +
                 " is not a CPU model; use \"host\" or a QEMU model such as "
                 "\"Skylake-Client,+avx\" (letters, digits and . _ + = , -)");
    }
  }
  const std::optional<Firmware> firmware = get_enum(top, "firmware", kFirmwares);
  if (firmware) profile.firmware = *firmware;
  const std::optional<bool> agent = get_bool(top, "agent");
  if (agent) profile.agent = *agent;
  agent_known_ = agent.has_value() || top.get("agent") == nullptr;

  if (const toml::table* ready = get_table(top, "ready")) {
    profile.ready = read_ready(TableRef{*ready, "ready", "ready"}, profile);
  }
  if (const toml::table* boot = get_table(top, "boot")) {
    profile.boot = read_boot(TableRef{*boot, "boot", "boot"});
  }
  read_disks(top, profile);
  read_nets(top, profile);
  if (const toml::table* cloud_init = get_table(top, "cloud_init")) {
    profile.cloud_init =
        read_cloud_init(TableRef{*cloud_init, "cloud_init", "cloud_init"}, profile);
  }
  read_shares(top, profile);
  if (const toml::table* shutdown = get_table(top, "shutdown")) {
    profile.shutdown = read_shutdown(TableRef{*shutdown, "shutdown", "shutdown"});
  }
  if (const toml::table* logs = get_table(top, "logs")) {
    profile.logs = read_logs(TableRef{*logs, "logs", "logs"});
  }
  if (const toml::table* qemu = get_table(top, "qemu")) {
    profile.qemu = read_qemu(TableRef{*qemu, "qemu", "qemu"});
  }

  if (machine == Machine::microvm) {
    if (top.get("boot") == nullptr) {
      report(*top.get("machine"), "machine",
             "microvm cannot boot from a disk; add a [boot] table with a kernel");
    }
    if (firmware == Firmware::uefi) {
      report(*top.get("firmware"), "firmware", "microvm supports only firmware = \"bios\"");
    }
  }
  return profile;
}

void ProfileReader::report(const toml::node& node, const std::string& key, std::string message) {
  diagnostics_.report(node.source(), key, std::move(message));
}

void ProfileReader::type_error(const toml::node& node, const std::string& key,
                               std::string_view expected) {
  report(node, key, "expected " + std::string(expected) + ", got " + std::string(type_name(node)));
}

std::optional<std::string> ProfileReader::string_value(const toml::node& node,
                                                       const std::string& key, bool allow_control) {
  const auto* string = node.as_string();
  if (string == nullptr) {
    type_error(node, key, "string");
    return std::nullopt;
  }
  if (!allow_control) {
    if (auto control = first_control_character(string->get())) {
      report(node, key, "contains a control character (" + hex4(*control) + "); remove it");
      return std::nullopt;
    }
  }
  return string->get();
}

std::optional<std::string> ProfileReader::get_user_name(const TableRef& table,
                                                        std::string_view why_not_root) {
  auto user = get_string(table, "user");
  if (!user) return std::nullopt;
  if (*user == "root") {
    report(*table.get("user"), table.path("user"), std::string(why_not_root));
  } else if (is_valid_user_name(*user)) {
    return user;
  } else {
    report(*table.get("user"), table.path("user"),
           toml_quote(*user) +
               " is not a user name; use 1 to 32 lowercase letters, digits, \"_\" or \"-\", "
               "starting with a letter or \"_\"");
  }
  return std::nullopt;
}

std::optional<std::string> ProfileReader::get_string(const TableRef& table, std::string_view key,
                                                     bool allow_control) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  return string_value(*node, table.path(key), allow_control);
}

std::optional<std::int64_t> ProfileReader::get_integer(const TableRef& table,
                                                       std::string_view key) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  const KeySpec& spec = key_spec(table.section, key);
  const auto* integer = node->as_integer();
  if (integer == nullptr) {
    type_error(*node, table.path(key), expected_type(spec));
    return std::nullopt;
  }
  const std::int64_t value = integer->get();
  if (value < spec.min || value > spec.max) {
    report(*node, table.path(key),
           std::to_string(value) + " is out of range; use " + std::to_string(spec.min) + " to " +
               std::to_string(spec.max) + std::string(spec.unit));
    return std::nullopt;
  }
  return value;
}

std::optional<bool> ProfileReader::get_bool(const TableRef& table, std::string_view key) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  const auto* boolean = node->as_boolean();
  if (boolean == nullptr) {
    type_error(*node, table.path(key), expected_type(key_spec(table.section, key)));
    return std::nullopt;
  }
  return boolean->get();
}

const toml::table* ProfileReader::get_table(const TableRef& parent, std::string_view key) {
  const toml::node* node = parent.get(key);
  if (node == nullptr) return nullptr;
  const toml::table* table = node->as_table();
  if (table == nullptr) {
    type_error(*node, parent.path(key), expected_type(key_spec(parent.section, key)));
  }
  return table;
}

// Relative paths in the file are relative to its folder; those given with --set are

fs::path ProfileReader::resolve(const toml::node& node, const std::string& text) const {
  const fs::path path(text);
  if (path.is_absolute()) return path.lexically_normal();
  const fs::path base = from_override(node) ? fs::current_path() : base_dir_;
  return (base / path).lexically_normal();
}

std::optional<fs::path> ProfileReader::get_path(const TableRef& table, std::string_view key) {
  const std::optional<std::string> text = get_string(table, key);
  if (!text) return std::nullopt;
  if (text->empty()) {
    report(*table.get(key), table.path(key), "the path is empty");
    return std::nullopt;
  }
  return resolve(*table.get(key), *text);
}

std::optional<fs::path> ProfileReader::get_existing_file(const TableRef& table,
                                                         std::string_view key) {
  std::optional<fs::path> path = get_path(table, key);
  if (path && !files_.exists(*path)) {
    report(*table.get(key), table.path(key), toml_quote(path->string()) + " does not exist");
    return std::nullopt;
  }
  return path;
}

std::optional<std::uint64_t> ProfileReader::get_size(const TableRef& table, std::string_view key) {
  const toml::node* found = table.get(key);
  if (found == nullptr) return std::nullopt;
  const toml::node& node = *found;
  const KeySpec& spec = key_spec(table.section, key);
  const auto min = static_cast<std::uint64_t>(spec.min);
  const auto max = static_cast<std::uint64_t>(spec.max);
  const bool whole_mib = spec.whole_mib;
  const std::string path = table.path(key);
  const std::string too_small = whole_mib || min > 1
                                    ? " is less than the minimum of " + format_size(min)
                                    : " is too small; use a size above 0, such as \"20GiB\"";
  const std::string too_large = " is more than the maximum of " + format_size(max);
  if (const auto* integer = node.as_integer()) {
    const std::int64_t mib = integer->get();
    const std::string shown = std::to_string(mib) + " MiB";
    if (mib > 0 && static_cast<std::uint64_t>(mib) > max / kMiB) {
      report(node, path, shown + too_large);
      return std::nullopt;
    }
    if (mib < 0 || static_cast<std::uint64_t>(mib) * kMiB < min) {
      report(node, path, shown + too_small);
      return std::nullopt;
    }
    return static_cast<std::uint64_t>(mib) * kMiB;
  }
  if (node.as_string() == nullptr) {
    type_error(node, path, expected_type(spec));
    return std::nullopt;
  }
  const std::optional<std::string> text = string_value(node, path);
  if (!text) return std::nullopt;
  const std::string shown = toml_quote(*text);
  const SizeReading reading = read_size(*text);
  switch (reading.status) {
    case SizeReading::Status::malformed:
      report(node, path,
             shown +
                 " is not a size; write a whole number and a binary unit (K, KiB, M, MiB, G, GiB, "
                 "T or TiB), e.g. \"2GiB\" or \"1536MiB\"");
      return std::nullopt;
    case SizeReading::Status::overflow:
      report(node, path, shown + too_large);
      return std::nullopt;
    case SizeReading::Status::ok:
      break;
  }
  if (reading.bytes > max) {
    report(node, path, shown + too_large);
    return std::nullopt;
  }
  if (reading.bytes < min) {
    report(node, path, shown + too_small);
    return std::nullopt;
  }
  if (whole_mib && reading.bytes % kMiB != 0) {
    report(node, path, shown + " is not a whole number of MiB");
    return std::nullopt;
  }
  return reading.bytes;
}

void ProfileReader::read_name(const TableRef& top, const fs::path& origin,
                              const ProfileOptions& options, Profile& profile) {
  const toml::node* node = top.get("name");
  if (node != nullptr) {
    if (auto name = string_value(*node, "name")) {
      if (is_valid_name(*name)) {
        profile.name = *name;
      } else {
        report(*node, "name",
               toml_quote(*name) + " is not a valid name; " + std::string(kNameRule));
      }
    }
  }
  if (options.name) {
    if (is_valid_name(*options.name)) {
      profile.name = *options.name;
    } else {
      diagnostics_.report_name_option(toml_quote(*options.name) + " is not a valid name; " +
                                      std::string(kNameRule));
    }
    return;
  }
  if (node != nullptr) return;
  const std::string stem = origin.stem().string();
  if (is_valid_name(stem)) {
    profile.name = stem;
  } else if (stem.empty()) {
    diagnostics_.report_unplaced("name",
                                 "missing; add name = \"...\" (" + std::string(kNameRule) + ")");
  } else {
    diagnostics_.report_unplaced("name", "missing, and the file name " + toml_quote(stem) +
                                             " is not a valid name; add name = \"...\" (" +
                                             std::string(kNameRule) + ")");
  }
}

std::vector<TableRef> ProfileReader::get_table_array(const TableRef& top, std::string_view key) {
  std::vector<TableRef> tables;
  const toml::node* node = top.get(key);
  if (node == nullptr) return tables;
  const toml::array* array = node->as_array();
  if (array == nullptr) {
    type_error(*node, std::string(key), expected_type(key_spec(top.section, key)));
    return tables;
  }
  for (std::size_t i = 0; i < array->size(); ++i) {
    const std::string element = std::string(key) + "[" + std::to_string(i) + "]";
    if (const toml::table* table = array->get(i)->as_table()) {
      tables.push_back(TableRef{*table, element, key});
    } else {
      type_error(*array->get(i), element, "table");
    }
  }
  return tables;
}

std::optional<std::string> ProfileReader::interface_name(const TableRef& table,
                                                         std::string_view key) {
  std::optional<std::string> name = get_string(table, key);
  if (name && !is_valid_interface_name(*name)) {
    report(*table.get(key), table.path(key),
           toml_quote(*name) +
               " is not an interface name; use 1 to 15 characters without \"/\", \":\" or "
               "spaces");
    return std::nullopt;
  }
  return name;
}

void ProfileReader::check_keys(const TableRef& table) {
  const std::vector<std::string_view> known = section_keys(table.section);
  for (const auto& [key, node] : table.table) {
    const std::string_view name = key.str();
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    std::string message = "unknown key " + toml_quote(name);
    if (auto suggestion = did_you_mean(name, known)) {
      message += "; did you mean " + toml_quote(*suggestion) + "?";
    } else {
      message += "; valid keys here: " + join_names(known);
    }
    diagnostics_.report(key.source(), table.path(name), std::move(message));
  }
}

}  // namespace qvm::profile
