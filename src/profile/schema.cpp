#include "profile/schema.hpp"

#include <array>
#include <stdexcept>

#include "profile/enum_names.hpp"
#include "profile/size.hpp"

namespace qvm::profile {
namespace {

template <class E, std::size_t N>
constexpr std::array<std::string_view, N> names_of(const EnumSpec<E, N>& spec) {
  std::array<std::string_view, N> names{};
  for (std::size_t i = 0; i < N; ++i) names[i] = spec.spellings[i].name;
  return names;
}

constexpr auto kMachineNames = names_of(kMachines);
constexpr auto kAccelNames = names_of(kAccels);
constexpr auto kFirmwareNames = names_of(kFirmwares);
constexpr auto kDiskFormatNames = names_of(kDiskFormats);
constexpr auto kDiskBusNames = names_of(kDiskBuses);
constexpr auto kCacheModeNames = names_of(kCacheModes);
constexpr auto kNetModeNames = names_of(kNetModes);
constexpr auto kNicModelNames = names_of(kNicModels);
constexpr auto kRestartPolicyNames = names_of(kRestartPolicies);

constexpr auto kMiBi = static_cast<std::int64_t>(kMiB);
constexpr auto kTiBi = static_cast<std::int64_t>(kTiB);

// What read_size accepts: digits, then at most one space and a binary unit (any case).
constexpr std::string_view kSizePattern = "^[0-9]+( ?[KkMmGgTt]([Ii][Bb])?)?$";

using T = KeyType;

// The order within a section is the order "valid keys here: ..." lists them.
const KeySpec kKeys[] = {
    {.key = "name",
     .type = T::string,
     .pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
     .doc = "VM name: 1-63 of A-Z a-z 0-9 . _ -, starting with a letter or digit; default: the "
            "file's stem"},
    {.key = "uuid",
     .type = T::string,
     .pattern = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$",
     .doc = "SMBIOS UUID, canonical 8-4-4-4-12 hex; default: chosen once, then kept"},
    {.key = "memory",
     .type = T::size,
     .min = 16 * kMiBi,
     .max = kTiBi,
     .whole_mib = true,
     .default_json = "1024",
     .doc = "guest RAM: a size with a unit, or an integer of MiB; 16 MiB to 1 TiB"},
    {.key = "cpus",
     .type = T::integer,
     .min = 1,
     .max = 255,
     .default_json = "1",
     .doc = "virtual CPUs"},
    {.key = "machine",
     .type = T::enumeration,
     .values = kMachineNames,
     .default_json = "\"q35\"",
     .doc = "machine type (microvm needs [boot] and BIOS)"},
    {.key = "accel",
     .type = T::enumeration,
     .values = kAccelNames,
     .default_json = "\"auto\"",
     .doc = "accelerator: auto (KVM if usable, else TCG with a warning), kvm or tcg"},
    {.key = "cpu",
     .type = T::string,
     .pattern = "^[A-Za-z0-9._+=,-]+$",
     .default_json = "\"host\"",
     .doc = "host (passthrough; max under TCG) or a QEMU CPU model with feature flags"},
    {.key = "firmware",
     .type = T::enumeration,
     .values = kFirmwareNames,
     .default_json = "\"bios\"",
     .doc = "bios (SeaBIOS) or uefi (OVMF)"},
    {.key = "agent",
     .type = T::boolean,
     .default_json = "false",
     .doc = "add a virtio-serial channel for qemu-guest-agent"},
    {.key = "ready", .type = T::table, .doc = "what qvm up waits for beyond QMP being ready"},
    {.key = "boot", .type = T::table, .doc = "direct kernel boot"},
    {.key = "disk", .type = T::table_array, .doc = "one entry per disk, in boot order"},
    {.key = "net",
     .type = T::table_array,
     .min = 1,
     .doc = "one entry per NIC; default: one user-mode virtio NIC"},
    {.key = "cloud_init",
     .type = T::table,
     .doc = "a cloud-init NoCloud seed, attached read-only as a CD-ROM labelled cidata"},
    {.key = "share",
     .type = T::table_array,
     .doc = "a host folder shared with the guest over 9p (virtio-9p)"},
    {.key = "shutdown", .type = T::table, .doc = "how qvm down and crashes are handled"},
    {.key = "logs", .type = T::table, .doc = "how much of each VM log is kept"},
    {.key = "qemu", .type = T::table, .doc = "the QEMU process itself"},

    {.section = "ready",
     .key = "serial",
     .type = T::string,
     .doc = "wait until a line of the serial console matches this ECMAScript regex"},
    {.section = "ready",
     .key = "agent",
     .type = T::boolean,
     .default_json = "false",
     .doc = "wait until the guest agent answers guest-ping (needs agent = true)"},
    {.section = "ready",
     .key = "timeout",
     .type = T::integer,
     .min = 1,
     .max = 86400,
     .unit = " (seconds)",
     .default_json = "300",
     .doc = "give up waiting after this many seconds"},

    {.section = "boot",
     .key = "kernel",
     .type = T::path,
     .required = true,
     .doc = "kernel image; must exist"},
    {.section = "boot", .key = "initrd", .type = T::path, .doc = "initial ramdisk; must exist"},
    {.section = "boot",
     .key = "cmdline",
     .type = T::string,
     .default_json = "\"\"",
     .doc = "kernel command line"},

    {.section = "disk",
     .key = "path",
     .type = T::path,
     .required = true,
     .doc = "image file; created from size or backing when missing"},
    {.section = "disk",
     .key = "format",
     .type = T::enumeration,
     .values = kDiskFormatNames,
     .doc = "image format; default: raw for .raw and .img, else qcow2"},
    {.section = "disk",
     .key = "bus",
     .type = T::enumeration,
     .values = kDiskBusNames,
     .default_json = "\"virtio\"",
     .doc = "bus the disk is attached to (microvm: virtio only)"},
    {.section = "disk",
     .key = "cache",
     .type = T::enumeration,
     .values = kCacheModeNames,
     .default_json = "\"writeback\"",
     .doc = "QEMU's -drive cache= mode"},
    {.section = "disk",
     .key = "size",
     .type = T::size,
     .min = 1,
     .max = 64 * kTiBi,
     .doc = "size to create the image with if it is missing; above 0, at most 64 TiB"},
    {.section = "disk",
     .key = "backing",
     .type = T::path,
     .doc = "create the image as a qcow2 overlay of this existing image"},
    {.section = "disk",
     .key = "readonly",
     .type = T::boolean,
     .default_json = "false",
     .doc = "attach read-only"},

    {.section = "net",
     .key = "mode",
     .type = T::enumeration,
     .values = kNetModeNames,
     .default_json = "\"user\"",
     .doc = "user (SLIRP), bridge, tap or none (no NIC)"},
    {.section = "net",
     .key = "bridge",
     .type = T::string,
     .doc = "host bridge; only with mode = \"bridge\", which requires it"},
    {.section = "net",
     .key = "ifname",
     .type = T::string,
     .doc = "existing tap device; only with mode = \"tap\""},
    {.section = "net",
     .key = "model",
     .type = T::enumeration,
     .values = kNicModelNames,
     .default_json = "\"virtio\"",
     .doc = "NIC model (microvm: virtio only)"},
    {.section = "net",
     .key = "mac",
     .type = T::string,
     .pattern = "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$",
     .doc = "unicast MAC address, unique across NICs; default: derived from the UUID"},
    {.section = "net",
     .key = "forward",
     .type = T::string_array,
     .default_json = "[]",
     .doc = "[tcp:|udp:][ADDR:]HOSTPORT:GUESTPORT rules; only with mode = \"user\""},

    {.section = "cloud_init",
     .key = "hostname",
     .type = T::string,
     .doc = "the guest's host name; default: the VM name"},
    {.section = "cloud_init",
     .key = "user",
     .type = T::string,
     .doc = "a user to create, with passwordless sudo and the keys; not root"},
    {.section = "cloud_init",
     .key = "ssh_authorized_keys",
     .type = T::string_array,
     .default_json = "[]",
     .doc = "public keys, one line of a .pub file each"},
    {.section = "cloud_init",
     .key = "user_data",
     .type = T::path,
     .doc = "a file that is the whole user-data; not with user or ssh_authorized_keys"},

    {.section = "share",
     .key = "path",
     .type = T::path,
     .required = true,
     .doc = "an existing folder"},
    {.section = "share",
     .key = "tag",
     .type = T::string,
     .pattern = "^[A-Za-z0-9_-]{1,31}$",
     .doc = "the mount tag, unique per VM; default: the folder's name"},
    {.section = "share",
     .key = "readonly",
     .type = T::boolean,
     .default_json = "false",
     .doc = "the guest can read but not write"},

    {.section = "shutdown",
     .key = "timeout",
     .type = T::integer,
     .min = 1,
     .max = 3600,
     .unit = " (seconds)",
     .default_json = "60",
     .doc = "seconds the guest gets to shut down before qvm down moves on"},
    {.section = "shutdown",
     .key = "restart",
     .type = T::enumeration,
     .values = kRestartPolicyNames,
     .default_json = "\"no\"",
     .doc = "restart policy: no, on-failure (after a crash) or always, with backoff"},

    {.section = "logs",
     .key = "max_size",
     .type = T::size,
     .min = 64 * 1024,
     .max = kTiBi,
     .default_json = "\"8MiB\"",
     .doc = "cap of serial.log, qemu.log and events.jsonl each, 64KiB to 1TiB"},

    {.section = "qemu",
     .key = "binary",
     .type = T::string,
     .default_json = "\"qemu-system-x86_64\"",
     .doc = "a name looked up in PATH, or a path"},
    {.section = "qemu",
     .key = "extra_args",
     .type = T::string_array,
     .default_json = "[]",
     .doc = "appended verbatim after everything qvm adds: the escape hatch"},
    {.section = "qemu",
     .key = "sandbox",
     .type = T::boolean,
     .default_json = "true",
     .doc = "run QEMU with -sandbox on (seccomp) when it supports it"},
    {.section = "qemu",
     .key = "user",
     .type = T::string,
     .doc = "for qvm running as root: QEMU drops to this existing user (-runas); not root"},
};

std::string join(std::span<const std::string_view> names) {
  std::string joined;
  for (std::string_view name : names) {
    if (!joined.empty()) joined += ", ";
    joined += name;
  }
  return joined;
}

nlohmann::json object_schema(std::string_view section);

nlohmann::json property_schema(const KeySpec& spec) {
  nlohmann::json schema;
  switch (spec.type) {
    case KeyType::string:
    case KeyType::path:
      schema["type"] = "string";
      if (!spec.pattern.empty()) schema["pattern"] = spec.pattern;
      break;
    case KeyType::integer:
      schema["type"] = "integer";
      schema["minimum"] = spec.min;
      schema["maximum"] = spec.max;
      break;
    case KeyType::boolean:
      schema["type"] = "boolean";
      break;
    case KeyType::enumeration:
      schema["type"] = "string";
      schema["enum"] = std::vector<std::string>(spec.values.begin(), spec.values.end());
      break;
    case KeyType::size:
      // A JSON Schema range bounds numbers only: here the integer MiB; strings get the syntax.
      schema["type"] = {"string", "integer"};
      schema["pattern"] = kSizePattern;
      schema["minimum"] = (spec.min + kMiBi - 1) / kMiBi;
      schema["maximum"] = spec.max / kMiBi;
      break;
    case KeyType::string_array:
      schema["type"] = "array";
      schema["items"] = {{"type", "string"}};
      break;
    case KeyType::table:
      schema = object_schema(spec.key);
      break;
    case KeyType::table_array:
      schema["type"] = "array";
      schema["items"] = object_schema(spec.key);
      if (spec.min > 0) schema["minItems"] = spec.min;
      break;
  }
  schema["description"] = spec.doc;
  if (!spec.default_json.empty()) schema["default"] = nlohmann::json::parse(spec.default_json);
  return schema;
}

nlohmann::json object_schema(std::string_view section) {
  nlohmann::json schema{{"type", "object"}, {"additionalProperties", false}};
  nlohmann::json properties = nlohmann::json::object();
  nlohmann::json required = nlohmann::json::array();
  for (const KeySpec& spec : kKeys) {
    if (spec.section != section) continue;
    properties[std::string(spec.key)] = property_schema(spec);
    if (spec.required) required.push_back(spec.key);
  }
  schema["properties"] = std::move(properties);
  if (!required.empty()) schema["required"] = std::move(required);
  return schema;
}

}  // namespace

std::span<const KeySpec> profile_keys() {
  return kKeys;
}

std::vector<std::string_view> section_keys(std::string_view section) {
  std::vector<std::string_view> keys;
  for (const KeySpec& spec : kKeys) {
    if (spec.section == section) keys.push_back(spec.key);
  }
  return keys;
}

const KeySpec& key_spec(std::string_view section, std::string_view key) {
  for (const KeySpec& spec : kKeys) {
    if (spec.section == section && spec.key == key) return spec;
  }
  throw std::logic_error("the profile schema has no key " + std::string(section) + "." +
                         std::string(key));
}

std::string expected_type(const KeySpec& spec) {
  switch (spec.type) {
    case KeyType::string:
    case KeyType::path:
      return "string";
    case KeyType::integer:
      return "integer";
    case KeyType::boolean:
      return "boolean";
    case KeyType::enumeration:
      return "string (one of " + join(spec.values) + ")";
    case KeyType::size:
      return "string with a unit or integer (MiB)";
    case KeyType::string_array:
      return "array of strings";
    case KeyType::table:
      return "table ([" + std::string(spec.key) + "])";
    case KeyType::table_array:
      return "array of tables ([[" + std::string(spec.key) + "]])";
  }
  return "value";
}

nlohmann::json json_schema() {
  nlohmann::json schema{{"$schema", "https://json-schema.org/draft/2020-12/schema"},
                        {"title", "qvm profile"},
                        {"description", "A qvm VM profile (TOML); see qvm's README, Profiles."}};
  schema.update(object_schema(""));
  return schema;
}

}  // namespace qvm::profile
