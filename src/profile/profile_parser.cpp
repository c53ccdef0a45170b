#include <fcntl.h>
#include <unistd.h>

// toml++ is compiled in (TOML_HEADER_ONLY, see CMakeLists.txt). Its internal assertions stay
// off in every build type, as in Debian's NDEBUG-built library: toml++ 3.3.0's parser trips
// some of them on malformed input it then reports as a parse error (see
// tests/fuzz/toml_fuzz_config.hpp, the fuzz build's own choice).
#if !defined(TOML_ASSERT) && !defined(TOML_CONFIG_HEADER)
#define TOML_ASSERT(expr) static_cast<void>(0)
#endif
#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <variant>

#include "profile/did_you_mean.hpp"
#include "profile/enum_names.hpp"
#include "profile/override_text.hpp"
#include "profile/serial_pattern.hpp"
#include "profile/size.hpp"
#include "profile/stored_profile.hpp"
#include "profile/toml_text.hpp"
#include "qvm/profile.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;
using profile::join_key;
using profile::toml_quote;

// Nodes that came from `--set` carry this source path plus the override's index, so every
// diagnostic can be traced to the file or to the override without a side table.
constexpr std::string_view kOverrideSourcePrefix = "--set#";
constexpr std::string_view kOverrideFile = "--set";
constexpr std::string_view kNameOptionFile = "--name";
constexpr std::string_view kNoFile = "<profile>";
constexpr std::size_t kMaxProfileBytes = 1024 * 1024;

constexpr std::array<std::string_view, 18> kTopKeys{
    "name", "uuid", "memory", "cpus",       "machine", "accel",    "cpu",  "firmware", "agent",
    "ready", "boot", "disk",  "net",  "cloud_init", "share",   "shutdown", "logs", "qemu"};
constexpr std::array<std::string_view, 3> kReadyKeys{"serial", "agent", "timeout"};
constexpr std::array<std::string_view, 3> kBootKeys{"kernel", "initrd", "cmdline"};
constexpr std::array<std::string_view, 7> kDiskKeys{"path", "format",  "bus",     "cache",
                                                    "size", "backing", "readonly"};
constexpr std::array<std::string_view, 6> kNetKeys{"mode",  "bridge", "ifname",
                                                   "model", "mac",    "forward"};
constexpr std::array<std::string_view, 2> kShutdownKeys{"timeout", "restart"};
constexpr std::array<std::string_view, 1> kLogsKeys{"max_size"};
constexpr std::array<std::string_view, 4> kQemuKeys{"binary", "extra_args", "sandbox", "user"};
constexpr std::array<std::string_view, 4> kCloudInitKeys{"hostname", "user", "ssh_authorized_keys",
                                                         "user_data"};
constexpr std::array<std::string_view, 3> kShareKeys{"path", "tag", "readonly"};

constexpr std::uint64_t kMinMemory = 16 * profile::kMiB;
constexpr std::uint64_t kMaxMemory = profile::kTiB;
constexpr std::uint64_t kMaxDiskSize = 64 * profile::kTiB;
// Below a few lines of console a rotated log would show nothing useful.
constexpr std::uint64_t kMinLogSize = 64 * profile::kKiB;
constexpr std::uint64_t kMaxLogSize = profile::kTiB;
constexpr unsigned kMaxCpus = 255;
constexpr std::int64_t kMaxReadyTimeout = 86400;
constexpr std::int64_t kMaxShutdownTimeout = 3600;
constexpr std::size_t kMaxInterfaceName = 15;  // IFNAMSIZ - 1
constexpr std::size_t kMaxIdeDisksPc = 4;      // two IDE channels, master and slave
constexpr std::size_t kMaxIdeDisksQ35 = 6;     // the ICH9 AHCI controller's six ports
constexpr std::size_t kMaxHostname = 253;      // RFC 1035, without the trailing dot
constexpr std::size_t kMaxHostnameLabel = 63;
constexpr std::size_t kMaxUserName = 32;       // useradd's limit
constexpr std::size_t kMaxMountTag = 31;       // virtio-9p's tag field, less its terminator

std::string_view type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return "string";
    case toml::node_type::integer:
      return "integer";
    case toml::node_type::floating_point:
      return "float";
    case toml::node_type::boolean:
      return "boolean";
    case toml::node_type::array:
      return "array";
    case toml::node_type::table:
      return "table";
    case toml::node_type::date:
      return "date";
    case toml::node_type::time:
      return "time";
    case toml::node_type::date_time:
      return "date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

// "an integer", "a table": for sentences about a node's type.
std::string with_article(std::string_view type) {
  const bool vowel = type == "integer" || type == "array";
  return (vowel ? "an " : "a ") + std::string(type);
}

std::string join_names(std::span<const std::string_view> names) {
  std::string joined;
  for (std::string_view name : names) {
    if (!joined.empty()) joined += ", ";
    joined += name;
  }
  return joined;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alnum(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c);
}
bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
char to_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lowercase(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(), to_lower);
  return lower;
}

std::string hex4(unsigned value) {
  static constexpr std::string_view kHex = "0123456789ABCDEF";
  std::string text = "U+";
  for (int shift = 12; shift >= 0; shift -= 4) text += kHex[(value >> shift) & 0xF];
  return text;
}

// The first C0 or C1 control character (or DEL) in UTF-8 `text`, as a code point.
std::optional<unsigned> first_control_character(std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte < 0x20 || byte == 0x7F) return byte;
    if (byte == 0xC2 && i + 1 < text.size()) {
      const auto next = static_cast<unsigned char>(text[i + 1]);
      if (next >= 0x80 && next <= 0x9F) return next;
    }
  }
  return std::nullopt;
}

constexpr std::string_view kNameRule =
    "use 1 to 63 letters, digits, \".\", \"_\" or \"-\", starting with a letter or digit";

bool is_canonical_uuid(std::string_view text) {
  if (text.size() != 36) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? text[i] != '-' : !is_hex(text[i])) return false;
  }
  return true;
}

bool is_valid_cpu_model(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return is_alnum(c) || c == '.' || c == '_' || c == '+' || c == '=' || c == ',' || c == '-';
  });
}

bool is_valid_interface_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxInterfaceName || name == "." || name == "..") return false;
  return std::none_of(name.begin(), name.end(), [](char c) {
    return c == '/' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
           c == '\r';
  });
}

// RFC 1123: dot-separated labels of letters, digits and "-", not starting or ending with "-".
bool is_valid_hostname(std::string_view name) {
  if (name.empty() || name.size() > kMaxHostname) return false;
  std::size_t begin = 0;
  while (true) {
    const std::size_t end = std::min(name.find('.', begin), name.size());
    const std::string_view label = name.substr(begin, end - begin);
    if (label.empty() || label.size() > kMaxHostnameLabel || label.front() == '-' ||
        label.back() == '-') {
      return false;
    }
    if (!std::all_of(label.begin(), label.end(), [](char c) { return is_alnum(c) || c == '-'; })) {
      return false;
    }
    if (end == name.size()) return true;
    begin = end + 1;
  }
}

// Debian's default NAME_REGEX for adduser, which cloud-init's useradd also accepts.
bool is_valid_user_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxUserName) return false;
  const auto lower_or_underscore = [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; };
  if (!lower_or_underscore(name.front())) return false;
  return std::all_of(name.begin(), name.end(), [&](char c) {
    return lower_or_underscore(c) || is_digit(c) || c == '-';
  });
}

bool is_mount_tag_character(char c) {
  return is_alnum(c) || c == '_' || c == '-';
}

bool is_valid_mount_tag(std::string_view tag) {
  return !tag.empty() && tag.size() <= kMaxMountTag &&
         std::all_of(tag.begin(), tag.end(), is_mount_tag_character);
}

// The tag a share gets from its folder's name: other characters become "_", cut to fit.
std::string default_mount_tag(const fs::path& folder, std::size_t index) {
  std::string tag = folder.filename().string();
  for (char& c : tag) {
    if (!is_mount_tag_character(c)) c = '_';
  }
  if (tag.size() > kMaxMountTag) tag.resize(kMaxMountTag);
  return tag.empty() ? "share" + std::to_string(index) : tag;
}

// "TYPE BASE64 [COMMENT]" with a type OpenSSH writes into .pub files.
bool is_ssh_public_key(std::string_view key) {
  const std::size_t space = key.find(' ');
  if (space == std::string_view::npos || space + 1 >= key.size()) return false;
  const std::string_view type = key.substr(0, space);
  const bool known_type = type.starts_with("ssh-") || type.starts_with("ecdsa-sha2-") ||
                          type.starts_with("sk-ssh-") || type.starts_with("sk-ecdsa-sha2-");
  if (!known_type) return false;
  const std::string_view rest = key.substr(space + 1);
  const std::string_view data = rest.substr(0, rest.find(' '));
  return data.size() >= 16 && std::all_of(data.begin(), data.end(), [](char c) {
           return is_alnum(c) || c == '+' || c == '/' || c == '=';
         });
}

bool is_unicast_mac(std::string_view mac) {
  return (std::stoi(std::string(mac.substr(0, 2)), nullptr, 16) & 1) == 0;
}

bool is_mac_syntax(std::string_view text) {
  if (text.size() != 17) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (i % 3 == 2 ? text[i] != ':' : !is_hex(text[i])) return false;
  }
  return true;
}

// Dotted quad, each part 0..255 without leading zeros (which some tools read as octal).
bool is_ipv4(std::string_view text) {
  int parts = 0;
  std::size_t i = 0;
  while (true) {
    const std::size_t begin = i;
    while (i < text.size() && is_digit(text[i])) ++i;
    const std::size_t length = i - begin;
    if (length == 0 || length > 3 || (length > 1 && text[begin] == '0')) return false;
    if (std::stoi(std::string(text.substr(begin, length))) > 255) return false;
    ++parts;
    if (i == text.size()) return parts == 4;
    if (text[i] != '.' || parts == 4) return false;
    ++i;
  }
}

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  std::size_t begin = 0;
  while (true) {
    const std::size_t end = text.find(separator, begin);
    parts.push_back(text.substr(begin, end == std::string_view::npos ? end : end - begin));
    if (end == std::string_view::npos) return parts;
    begin = end + 1;
  }
}

// Reads "[tcp:|udp:][ADDR:]HOSTPORT:GUESTPORT"; on failure returns what is wrong.
std::variant<PortForward, std::string> read_forward(std::string_view rule) {
  const std::string quoted = toml_quote(rule);
  const std::vector<std::string_view> parts = split(rule, ':');
  if (parts.size() < 2 || parts.size() > 4) {
    return quoted +
           " is not a port forward; use \"[tcp:|udp:][ADDRESS:]HOSTPORT:GUESTPORT\", such as "
           "\"tcp:2222:22\"";
  }
  PortForward forward;
  std::size_t next = 0;
  const auto is_protocol = [](std::string_view part) {
    const std::string lower = lowercase(part);
    return lower == "tcp" || lower == "udp";
  };
  if (parts.size() == 4 || (parts.size() == 3 && is_protocol(parts[0]))) {
    if (!is_protocol(parts[0])) {
      return quoted + ": unknown protocol " + toml_quote(parts[0]) + "; use tcp or udp";
    }
    forward.protocol = lowercase(parts[next++]);
  }
  if (parts.size() - next == 3) {
    if (!is_ipv4(parts[next])) {
      if (parts.size() == 3) {
        return quoted + ": " + toml_quote(parts[0]) + " is neither tcp, udp nor an IPv4 address";
      }
      return quoted + ": " + toml_quote(parts[next]) +
             " is not an IPv4 address; use one such as 127.0.0.1, or 0.0.0.0 for all interfaces";
    }
    forward.host_address = std::string(parts[next++]);
  }
  std::array<std::uint16_t*, 2> ports{&forward.host_port, &forward.guest_port};
  for (std::uint16_t* port : ports) {
    const std::string_view part = parts[next++];
    if (part.empty() || !std::all_of(part.begin(), part.end(), is_digit)) {
      return quoted + ": " + toml_quote(part) + " is not a port number; use 1 to 65535";
    }
    const long value = part.size() > 5 ? 65536 : std::stol(std::string(part));
    if (value < 1 || value > 65535) {
      return quoted + ": port " + std::string(part) + " is out of range; use 1 to 65535";
    }
    *port = static_cast<std::uint16_t>(value);
  }
  return forward;
}

bool forwards_collide(const PortForward& a, const PortForward& b) {
  // A wildcard listener and a specific one on the same port cannot both bind.
  return a.protocol == b.protocol && a.host_port == b.host_port &&
         (a.host_address == b.host_address || a.host_address == "0.0.0.0" ||
          b.host_address == "0.0.0.0");
}

std::optional<std::size_t> override_index(const toml::source_region& where) {
  if (!where.path || !where.path->starts_with(kOverrideSourcePrefix)) return std::nullopt;
  return std::stoul(where.path->substr(kOverrideSourcePrefix.size()));
}

// A source line fit to print under a message: control characters (a stray ESC or newline)
// become "?", one column each, so the caret still lines up; tabs stay for the caret line.
std::string printable(std::string_view line) {
  std::string shown(line);
  for (char& c : shown) {
    const auto byte = static_cast<unsigned char>(c);
    if ((byte < 0x20 && c != '\t') || byte == 0x7F) c = '?';
  }
  return shown;
}

bool from_override(const toml::node& node) {
  return override_index(node.source()).has_value();
}

// Collects diagnostics with their places; one per key; sorted on the way out.
class Diagnostics {
 public:
  Diagnostics(std::string file, std::string_view text, std::span<const std::string> overrides)
      : file_(std::move(file)), overrides_(overrides), value_columns_(overrides.size(), 1) {
    for (std::string_view line : split(text, '\n')) {
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      lines_.push_back(printable(line));
    }
  }

  void set_value_column(std::size_t override_index, int column) {
    value_columns_[override_index] = column;
  }

  // A problem at `where` (in the file or in an override).
  void report(const toml::source_region& where, const std::string& key, std::string message) {
    ProfileDiagnostic diagnostic;
    diagnostic.key = key;
    diagnostic.message = std::move(message);
    if (const std::optional<std::size_t> index = override_index(where)) {
      diagnostic.file = kOverrideFile;
      diagnostic.line = static_cast<int>(*index) + 1;
      // Override values are parsed from a line laid out like the override text, so their
      // columns already match it; only continuation lines of a multi-line value do not.
      diagnostic.column =
          where.begin.line == 1 ? static_cast<int>(where.begin.column) : value_columns_[*index];
      diagnostic.source_line = printable(overrides_[*index]);
      add(Group::overrides, std::move(diagnostic));
      return;
    }
    diagnostic.file = file_;
    diagnostic.line = static_cast<int>(where.begin.line);
    diagnostic.column = static_cast<int>(where.begin.column);
    if (diagnostic.line > 0) diagnostic.source_line = source_line(diagnostic.line);
    add(Group::file, std::move(diagnostic));
  }

  // A problem of the whole file, with no single place in it.
  void report_unplaced(const std::string& key, std::string message) {
    add(Group::file, ProfileDiagnostic{file_, 0, 0, key, std::move(message), ""});
  }

  // A malformed override, at `column` of override number `index`.
  void report_override(std::size_t index, int column, const std::string& key, std::string message) {
    add(Group::overrides,
        ProfileDiagnostic{std::string(kOverrideFile), static_cast<int>(index) + 1, column, key,
                          std::move(message), printable(overrides_[index])});
  }

  // A bad --name.
  void report_name_option(std::string message) {
    add(Group::name_option,
        ProfileDiagnostic{std::string(kNameOptionFile), 0, 0, "name", std::move(message), ""});
  }

  // A syntax error: toml++'s description at its position.
  void report_syntax(const toml::parse_error& error) {
    report(error.source(), "", std::string(error.description()));
  }

  bool empty() const { return entries_.empty(); }

  std::vector<ProfileDiagnostic> sorted() const {
    std::vector<Entry> entries = entries_;
    std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
      return std::tie(a.group, a.diagnostic.line, a.diagnostic.column) <
             std::tie(b.group, b.diagnostic.line, b.diagnostic.column);
    });
    std::vector<ProfileDiagnostic> diagnostics;
    for (Entry& entry : entries) diagnostics.push_back(std::move(entry.diagnostic));
    return diagnostics;
  }

 private:
  enum class Group { file, overrides, name_option };
  struct Entry {
    Group group;
    ProfileDiagnostic diagnostic;
  };

  std::string source_line(int line) const {
    const auto index = static_cast<std::size_t>(line) - 1;
    return index < lines_.size() ? lines_[index] : std::string();
  }

  void add(Group group, ProfileDiagnostic diagnostic) {
    if (!diagnostic.key.empty() && !keys_.insert(diagnostic.key).second) return;
    entries_.push_back(Entry{group, std::move(diagnostic)});
  }

  std::string file_;
  std::span<const std::string> overrides_;
  std::vector<int> value_columns_;
  std::vector<std::string> lines_;
  std::vector<Entry> entries_;
  std::set<std::string> keys_;
};

// Applies `--set KEY=VALUE` overrides to the parsed document.
class OverrideApplier {
 public:
  OverrideApplier(toml::table& document, Diagnostics& diagnostics)
      : document_(document), diagnostics_(diagnostics) {}

  void apply(std::size_t index, std::string_view text) {
    auto read = profile::read_override(text);
    if (const auto* error = std::get_if<profile::OverrideSyntaxError>(&read)) {
      diagnostics_.report_override(index, error->column, "", error->message);
      return;
    }
    const auto& parsed = std::get<profile::OverrideText>(read);
    diagnostics_.set_value_column(index, parsed.value_column);
    std::optional<toml::table> holder = parse_value(index, parsed);
    if (!holder) {
      diagnostics_.report_override(index, parsed.value_column, "", "the value is not valid UTF-8");
      return;
    }
    toml::node& value = *holder->get("v");

    toml::node* current = &document_;
    std::string path;
    for (std::size_t s = 0; s < parsed.steps.size(); ++s) {
      const profile::OverrideStep& step = parsed.steps[s];
      const bool last = s + 1 == parsed.steps.size();
      const bool as_index =
          step.kind == profile::OverrideStep::Kind::index || (step.numeric && current->is_array());
      if (!as_index) {
        const std::string child_path = join_key(path, step.name);
        toml::table* table = current->as_table();
        if (table == nullptr) {
          diagnostics_.report_override(
              index, step.column, child_path,
              current->is_array()
                  ? path + " is an array; pick an entry, such as " + path + "[0]." + step.name
                  : path + " is " + with_article(type_name(*current)) + ", not a table");
          return;
        }
        toml::key key(step.name, key_region(index, step));
        if (last) {
          table->insert_or_assign(std::move(key), std::move(value));
          return;
        }
        toml::node* child = table->get(step.name);
        if (child == nullptr) {
          const profile::OverrideStep& next = parsed.steps[s + 1];
          if (next.kind == profile::OverrideStep::Kind::index || next.numeric) {
            child = &table->insert_or_assign(std::move(key), make_array(index, step.column))
                         .first->second;
          } else {
            child = &table->insert_or_assign(std::move(key), make_table(index, step.column))
                         .first->second;
          }
        }
        current = child;
        path = child_path;
      } else {
        const std::string child_path = path + "[" + std::to_string(step.index) + "]";
        toml::array* array = current->as_array();
        if (array == nullptr) {
          diagnostics_.report_override(
              index, step.column, child_path,
              path + " is " + with_article(type_name(*current)) + ", not an array");
          return;
        }
        const std::size_t size = array->size();
        if (step.index > size) {
          diagnostics_.report_override(
              index, step.column, path + "[" + step.name + "]",
              "index " + step.name + " is out of range; " + path + " has " + std::to_string(size) +
                  (size == 1 ? " entry" : " entries") + ", so use 0 to " + std::to_string(size) +
                  " (" + std::to_string(size) + " adds one)");
          return;
        }
        if (last) {
          if (step.index == size) {
            array->push_back(std::move(value));
          } else {
            array->replace(array->cbegin() + static_cast<std::ptrdiff_t>(step.index),
                           std::move(value));
          }
          return;
        }
        if (step.index == size) array->push_back(make_table(index, step.column));
        current = array->get(step.index);
        path = child_path;
      }
    }
  }

 private:
  static std::string source_name(std::size_t index) {
    return std::string(kOverrideSourcePrefix) + std::to_string(index);
  }

  static toml::source_region key_region(std::size_t index, const profile::OverrideStep& step) {
    toml::source_region region;
    region.begin = {1, static_cast<toml::source_index>(step.column)};
    region.end = {1, static_cast<toml::source_index>(step.column + step.name.size())};
    region.path = std::make_shared<const std::string>(source_name(index));
    return region;
  }

  // toml++ offers no way to set a node's source, so new containers are parsed from a line
  // that puts their header at the override's column.
  static toml::table make_table(std::size_t index, int column) {
    toml::table parsed = toml::parse(std::string(static_cast<std::size_t>(column - 1), ' ') + "[v]",
                                     source_name(index));
    return std::move(*parsed.get_as<toml::table>("v"));
  }

  static toml::array make_array(std::size_t index, int column) {
    toml::table parsed = toml::parse(
        std::string(static_cast<std::size_t>(column - 1), ' ') + "[[v]]", source_name(index));
    toml::array array = std::move(*parsed.get_as<toml::array>("v"));
    array.clear();
    return array;
  }

  // The value as TOML when it is a single TOML value, else as a plain string. The line is laid
  // out so the value starts at the same column as in the override text.
  static std::optional<toml::table> parse_value(std::size_t index,
                                                const profile::OverrideText& parsed) {
    const std::string prefix =
        "v=" + std::string(static_cast<std::size_t>(std::max(0, parsed.value_column - 3)), ' ');
    try {
      toml::table table = toml::parse(prefix + parsed.value, source_name(index));
      if (table.size() == 1 && table.contains("v")) return table;
    } catch (const toml::parse_error&) {
      // Not TOML: taken as a plain string below.
    }
    try {
      return toml::parse(prefix + toml_quote(parsed.value), source_name(index));
    } catch (const toml::parse_error&) {
      return std::nullopt;
    }
  }

  toml::table& document_;
  Diagnostics& diagnostics_;
};

// A table being validated, and the dotted key it lives at.
struct TableRef {
  const toml::table& table;
  std::string prefix;

  const toml::node* get(std::string_view key) const { return table.get(key); }
  const toml::source_region& key_source(std::string_view key) const {
    return table.find(key)->first.source();
  }
  std::string path(std::string_view key) const { return join_key(prefix, key); }
};

// Turns a parsed (and overridden) document into a Profile, reporting every problem.
class ProfileValidator {
 public:
  ProfileValidator(Diagnostics& diagnostics, const FileChecker& files, fs::path base_dir)
      : diagnostics_(diagnostics), files_(files), base_dir_(std::move(base_dir)) {}

  Profile validate(const toml::table& document, const fs::path& origin,
                   const ProfileOptions& options) {
    Profile profile;
    const TableRef top{document, ""};
    check_keys(top, kTopKeys);

    read_name(top, origin, options, profile);
    if (auto uuid = get_string(top, "uuid")) {
      if (is_canonical_uuid(*uuid)) {
        profile.uuid = lowercase(*uuid);
      } else {
        report(
            *top.get("uuid"), "uuid",
            toml_quote(*uuid) +
                " is not a UUID; use the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (hex digits)");
      }
    }
    if (const toml::node* memory = top.get("memory")) {
      if (auto bytes = size_value(*memory, "memory", kMinMemory, kMaxMemory, true)) {
        profile.memory_mib = *bytes / profile::kMiB;
      }
    }
    if (auto cpus = get_integer(top, "cpus", 1, kMaxCpus, "")) {
      profile.cpus = static_cast<unsigned>(*cpus);
    }
    const std::optional<Machine> machine = get_enum(top, "machine", profile::kMachines);
    machine_known_ = machine.has_value() || top.get("machine") == nullptr;
    if (machine) profile.machine = *machine;
    if (auto accel = get_enum(top, "accel", profile::kAccels)) profile.accel = *accel;
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
    const std::optional<Firmware> firmware = get_enum(top, "firmware", profile::kFirmwares);
    if (firmware) profile.firmware = *firmware;
    const std::optional<bool> agent = get_bool(top, "agent");
    if (agent) profile.agent = *agent;
    agent_known_ = agent.has_value() || top.get("agent") == nullptr;

    if (const toml::table* ready = get_table(top, "ready")) {
      profile.ready = read_ready(TableRef{*ready, "ready"}, profile);
    }
    if (const toml::table* boot = get_table(top, "boot")) {
      profile.boot = read_boot(TableRef{*boot, "boot"});
    }
    read_disks(top, profile);
    read_nets(top, profile);
    if (const toml::table* cloud_init = get_table(top, "cloud_init")) {
      profile.cloud_init = read_cloud_init(TableRef{*cloud_init, "cloud_init"}, profile);
    }
    read_shares(top, profile);
    if (const toml::table* shutdown = get_table(top, "shutdown")) {
      profile.shutdown = read_shutdown(TableRef{*shutdown, "shutdown"});
    }
    if (const toml::table* logs = get_table(top, "logs")) {
      profile.logs = read_logs(TableRef{*logs, "logs"});
    }
    if (const toml::table* qemu = get_table(top, "qemu")) {
      profile.qemu = read_qemu(TableRef{*qemu, "qemu"});
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

 private:
  void report(const toml::node& node, const std::string& key, std::string message) {
    diagnostics_.report(node.source(), key, std::move(message));
  }

  void type_error(const toml::node& node, const std::string& key, std::string_view expected) {
    report(node, key,
           "expected " + std::string(expected) + ", got " + std::string(type_name(node)));
  }

  template <std::size_t N>
  void check_keys(const TableRef& table, const std::array<std::string_view, N>& known) {
    for (const auto& [key, node] : table.table) {
      const std::string_view name = key.str();
      if (std::find(known.begin(), known.end(), name) != known.end()) continue;
      std::string message = "unknown key " + toml_quote(name);
      if (auto suggestion = profile::did_you_mean(name, known)) {
        message += "; did you mean " + toml_quote(*suggestion) + "?";
      } else {
        message += "; valid keys here: " + join_names(known);
      }
      diagnostics_.report(key.source(), table.path(name), std::move(message));
    }
  }

  // A string, free of control characters unless `allow_control`.
  std::optional<std::string> string_value(const toml::node& node, const std::string& key,
                                          bool allow_control = false) {
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

  // table.user: a valid user name other than root (`why_not_root` says why not), or nothing.
  std::optional<std::string> get_user_name(const TableRef& table, std::string_view why_not_root) {
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

  std::optional<std::string> get_string(const TableRef& table, std::string_view key,
                                        bool allow_control = false) {
    const toml::node* node = table.get(key);
    if (node == nullptr) return std::nullopt;
    return string_value(*node, table.path(key), allow_control);
  }

  std::optional<std::int64_t> get_integer(const TableRef& table, std::string_view key,
                                          std::int64_t min, std::int64_t max,
                                          std::string_view unit) {
    const toml::node* node = table.get(key);
    if (node == nullptr) return std::nullopt;
    const auto* integer = node->as_integer();
    if (integer == nullptr) {
      type_error(*node, table.path(key), "integer");
      return std::nullopt;
    }
    const std::int64_t value = integer->get();
    if (value < min || value > max) {
      report(*node, table.path(key),
             std::to_string(value) + " is out of range; use " + std::to_string(min) + " to " +
                 std::to_string(max) + std::string(unit));
      return std::nullopt;
    }
    return value;
  }

  std::optional<bool> get_bool(const TableRef& table, std::string_view key) {
    const toml::node* node = table.get(key);
    if (node == nullptr) return std::nullopt;
    const auto* boolean = node->as_boolean();
    if (boolean == nullptr) {
      type_error(*node, table.path(key), "boolean");
      return std::nullopt;
    }
    return boolean->get();
  }

  template <class E, std::size_t N>
  std::optional<E> get_enum(const TableRef& table, std::string_view key,
                            const profile::EnumSpec<E, N>& spec) {
    const toml::node* node = table.get(key);
    if (node == nullptr) return std::nullopt;
    std::array<std::string_view, N> names;
    std::transform(spec.spellings.begin(), spec.spellings.end(), names.begin(),
                   [](const auto& s) { return s.name; });
    if (node->as_string() == nullptr) {
      type_error(*node, table.path(key), "string (one of " + join_names(names) + ")");
      return std::nullopt;
    }
    const std::optional<std::string> text = string_value(*node, table.path(key));
    if (!text) return std::nullopt;
    if (auto value = profile::from_string(spec, *text)) return value;
    std::string message = toml_quote(*text) + " is not " + std::string(spec.noun) +
                          "; use one of " + join_names(names);
    if (auto suggestion = profile::did_you_mean(*text, names)) {
      message += " (did you mean " + toml_quote(*suggestion) + "?)";
    }
    report(*node, table.path(key), std::move(message));
    return std::nullopt;
  }

  const toml::table* get_table(const TableRef& parent, std::string_view key) {
    const toml::node* node = parent.get(key);
    if (node == nullptr) return nullptr;
    const toml::table* table = node->as_table();
    if (table == nullptr) {
      type_error(*node, parent.path(key), "table ([" + std::string(key) + "])");
    }
    return table;
  }

  // Relative paths in the file are relative to its folder; those given with --set are
  // relative to the working directory, like any other path on a command line.
  fs::path resolve(const toml::node& node, const std::string& text) const {
    const fs::path path(text);
    if (path.is_absolute()) return path.lexically_normal();
    const fs::path base = from_override(node) ? fs::current_path() : base_dir_;
    return (base / path).lexically_normal();
  }

  std::optional<fs::path> get_path(const TableRef& table, std::string_view key) {
    const std::optional<std::string> text = get_string(table, key);
    if (!text) return std::nullopt;
    if (text->empty()) {
      report(*table.get(key), table.path(key), "the path is empty");
      return std::nullopt;
    }
    return resolve(*table.get(key), *text);
  }

  // An existing file named by `key`, reported if missing.
  std::optional<fs::path> get_existing_file(const TableRef& table, std::string_view key) {
    std::optional<fs::path> path = get_path(table, key);
    if (path && !files_.exists(*path)) {
      report(*table.get(key), table.path(key), toml_quote(path->string()) + " does not exist");
      return std::nullopt;
    }
    return path;
  }

  // A size: a string with a unit or an integer count of MiB, within [min, max] bytes.
  std::optional<std::uint64_t> size_value(const toml::node& node, const std::string& key,
                                          std::uint64_t min, std::uint64_t max, bool whole_mib) {
    const std::string too_small = whole_mib || min > 1
                                      ? " is less than the minimum of " + profile::format_size(min)
                                      : " is too small; use a size above 0, such as \"20GiB\"";
    const std::string too_large = " is more than the maximum of " + profile::format_size(max);
    if (const auto* integer = node.as_integer()) {
      const std::int64_t mib = integer->get();
      const std::string shown = std::to_string(mib) + " MiB";
      if (mib > 0 && static_cast<std::uint64_t>(mib) > max / profile::kMiB) {
        report(node, key, shown + too_large);
        return std::nullopt;
      }
      if (mib < 0 || static_cast<std::uint64_t>(mib) * profile::kMiB < min) {
        report(node, key, shown + too_small);
        return std::nullopt;
      }
      return static_cast<std::uint64_t>(mib) * profile::kMiB;
    }
    if (node.as_string() == nullptr) {
      type_error(node, key, "string with a unit or integer (MiB)");
      return std::nullopt;
    }
    const std::optional<std::string> text = string_value(node, key);
    if (!text) return std::nullopt;
    const std::string shown = toml_quote(*text);
    const profile::SizeReading reading = profile::read_size(*text);
    switch (reading.status) {
      case profile::SizeReading::Status::malformed:
        report(node, key, shown + " is not a size; write a whole number and a binary unit (K, KiB, M, MiB, G, GiB, T or TiB), e.g. \"2GiB\" or \"1536MiB\"");
        return std::nullopt;
      case profile::SizeReading::Status::overflow:
        report(node, key, shown + too_large);
        return std::nullopt;
      case profile::SizeReading::Status::ok:
        break;
    }
    if (reading.bytes > max) {
      report(node, key, shown + too_large);
      return std::nullopt;
    }
    if (reading.bytes < min) {
      report(node, key, shown + too_small);
      return std::nullopt;
    }
    if (whole_mib && reading.bytes % profile::kMiB != 0) {
      report(node, key, shown + " is not a whole number of MiB");
      return std::nullopt;
    }
    return reading.bytes;
  }

  void read_name(const TableRef& top, const fs::path& origin, const ProfileOptions& options,
                 Profile& profile) {
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

  Ready read_ready(const TableRef& table, const Profile& profile) {
    check_keys(table, kReadyKeys);
    Ready ready;
    if (const toml::node* node = table.get("serial")) {
      if (auto pattern = string_value(*node, "ready.serial", true)) {
        if (pattern->empty()) {
          report(*node, "ready.serial",
                 "an empty pattern matches at once; give one such as \"login:\" or remove serial");
        } else {
          if (auto problem = profile::regex_problem(*pattern)) {
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
    if (auto timeout = get_integer(table, "timeout", 1, kMaxReadyTimeout, " (seconds)")) {
      ready.timeout = std::chrono::seconds(*timeout);
    }
    return ready;
  }

  Boot read_boot(const TableRef& table) {
    check_keys(table, kBootKeys);
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

  // The elements of an array of tables at `key`, each with its dotted key; reports the rest.
  std::vector<TableRef> get_table_array(const TableRef& top, std::string_view key) {
    std::vector<TableRef> tables;
    const toml::node* node = top.get(key);
    if (node == nullptr) return tables;
    const toml::array* array = node->as_array();
    if (array == nullptr) {
      type_error(*node, std::string(key), "array of tables ([[" + std::string(key) + "]])");
      return tables;
    }
    for (std::size_t i = 0; i < array->size(); ++i) {
      const std::string element = std::string(key) + "[" + std::to_string(i) + "]";
      if (const toml::table* table = array->get(i)->as_table()) {
        tables.push_back(TableRef{*table, element});
      } else {
        type_error(*array->get(i), element, "table");
      }
    }
    return tables;
  }

  void read_disks(const TableRef& top, Profile& profile) {
    std::map<fs::path, std::string> used_paths;
    std::size_t ide_disks = 0;
    for (const TableRef& table : get_table_array(top, "disk")) {
      check_keys(table, kDiskKeys);
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
      const std::optional<DiskFormat> format = get_enum(table, "format", profile::kDiskFormats);
      const bool format_known = format.has_value() || table.get("format") == nullptr;
      disk.format = format ? *format : (inferred_raw ? DiskFormat::raw : DiskFormat::qcow2);
      const std::optional<DiskBus> bus = get_enum(table, "bus", profile::kDiskBuses);
      if (bus) disk.bus = *bus;
      if (auto cache = get_enum(table, "cache", profile::kCacheModes)) disk.cache = *cache;
      if (const toml::node* size = table.get("size")) {
        disk.size_bytes = size_value(*size, table.path("size"), 1, kMaxDiskSize, false);
      }
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
          const std::size_t limit =
              profile.machine == Machine::pc ? kMaxIdeDisksPc : kMaxIdeDisksQ35;
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

  void read_nets(const TableRef& top, Profile& profile) {
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
      check_keys(table, kNetKeys);
      Net net;
      const std::optional<NetMode> mode = get_enum(table, "mode", profile::kNetModes);
      const bool mode_known = mode.has_value() || table.get("mode") == nullptr;
      if (mode) net.mode = *mode;
      const std::string mode_name = toml_quote(to_string(net.mode));
      auto only_for = [&](std::string_view key, NetMode wanted) {
        diagnostics_.report(
            table.key_source(key), table.path(key),
            "only valid with mode = " + toml_quote(to_string(wanted)) + ", not " + mode_name);
      };

      if (mode_known && net.mode == NetMode::none) {
        for (const auto& [key, value] : table.table) {
          const std::string_view name = key.str();
          if (name == "mode") continue;
          if (std::find(kNetKeys.begin(), kNetKeys.end(), name) == kNetKeys.end()) continue;
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
      if (auto model = get_enum(table, "model", profile::kNicModels)) {
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
              report(rule_node, key,
                     clash->first.host_address == rule_value.host_address
                         ? "host port " + host(rule_value) + " is already forwarded by " +
                               clash->second
                         : "host port " + host(rule_value) + " overlaps " + host(clash->first) +
                               " of " + clash->second + " (0.0.0.0 is every address)");
              continue;
            }
            used_ports.emplace_back(rule_value, key);
            net.forward.push_back(rule_value);
          }
        } else {
          type_error(*forward, table.path("forward"), "array of strings");
        }
      }
      profile.nets.push_back(std::move(net));
    }
  }

  CloudInit read_cloud_init(const TableRef& table, const Profile& profile) {
    check_keys(table, kCloudInitKeys);
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
    cloud_init.user = get_user_name(table, "\"root\" exists in every image; name a new user, or leave "
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
        type_error(*keys, table.path("ssh_authorized_keys"), "array of strings");
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

  void read_shares(const TableRef& top, Profile& profile) {
    std::map<std::string, std::string> used_tags;
    const std::vector<TableRef> tables = get_table_array(top, "share");
    for (std::size_t index = 0; index < tables.size(); ++index) {
      const TableRef& table = tables[index];
      check_keys(table, kShareKeys);
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

  std::optional<std::string> interface_name(const TableRef& table, std::string_view key) {
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

  Shutdown read_shutdown(const TableRef& table) {
    check_keys(table, kShutdownKeys);
    Shutdown shutdown;
    if (auto timeout = get_integer(table, "timeout", 1, kMaxShutdownTimeout, " (seconds)")) {
      shutdown.timeout = std::chrono::seconds(*timeout);
    }
    if (auto restart = get_enum(table, "restart", profile::kRestartPolicies)) {
      shutdown.restart = *restart;
    }
    return shutdown;
  }

  Logs read_logs(const TableRef& table) {
    check_keys(table, kLogsKeys);
    Logs logs;
    if (const toml::node* max_size = table.get("max_size")) {
      if (auto bytes = size_value(*max_size, table.path("max_size"), kMinLogSize, kMaxLogSize, false)) {
        logs.max_size = *bytes;
      }
    }
    return logs;
  }

  QemuOptions read_qemu(const TableRef& table) {
    check_keys(table, kQemuKeys);
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
        type_error(*node, "qemu.extra_args", "array of strings");
      }
    }
    if (auto sandbox = get_bool(table, "sandbox")) qemu.sandbox = *sandbox;
    qemu.user = get_user_name(table, "QEMU already runs as root without it; name an unprivileged user, "
                                     "e.g. \"nobody\"");
    return qemu;
  }

  Diagnostics& diagnostics_;
  const FileChecker& files_;
  fs::path base_dir_;
  bool machine_known_ = true;
  bool agent_known_ = true;
};

}  // namespace

namespace {

// What a stored copy must be, and whose copy it is.
struct StoredCopy {
  std::string vm;
};

// The fix for a stored copy that is not what qvm wrote.
ProfileDiagnostic stored_copy_fix(const std::string& file, const StoredCopy& stored) {
  return ProfileDiagnostic{
      file,
      0,
      0,
      "",
      "this is qvm's stored copy of the profile of VM " + toml_quote(stored.vm) +
          ", which it writes whole; qvm up PROFILE again to re-define the VM, or qvm rm " +
          stored.vm,
      ""};
}

// A stored copy holds every key to_toml writes: its name first and the [qemu] table last,
// so a file that was emptied or cut short, or that belongs to another VM, shows here
// before it can become a VM with default settings.
std::optional<std::string> stored_copy_problem(std::string_view text, const toml::table& document,
                                               const StoredCopy& stored) {
  const toml::node* name = document.get("name");
  if (name == nullptr) return std::string("it has no name (the file is empty or damaged)");
  const std::optional<std::string> value = name->value<std::string>();
  if (!value || *value != stored.vm) {
    return "its name is " + (value ? toml_quote(*value) : std::string("not a string")) +
           ", but it lies in the folder of VM " + toml_quote(stored.vm);
  }
  const toml::table* qemu = document.get_as<toml::table>("qemu");
  if (qemu == nullptr || !qemu->contains("sandbox") || text.empty() || text.back() != '\n') {
    return std::string(
        "it ends before the [qemu] table that qvm writes last (the file was cut short)");
  }
  return std::nullopt;
}

Profile parse_profile_text(std::string_view text, const std::filesystem::path& origin,
                           const ProfileOptions& options, const StoredCopy* stored) {
  const std::string file = origin.empty() ? std::string(kNoFile) : origin.string();
  Diagnostics diagnostics(file, text, options.overrides);
  auto fail = [&]() -> Profile {
    std::vector<ProfileDiagnostic> found = diagnostics.sorted();
    if (stored) found.push_back(stored_copy_fix(file, *stored));
    throw ProfileError(std::move(found));
  };
  toml::table document;
  try {
    document = toml::parse(text);
  } catch (const toml::parse_error& error) {
    diagnostics.report_syntax(error);
    return fail();
  }
  if (stored) {
    if (auto problem = stored_copy_problem(text, document, *stored)) {
      throw ProfileError(
          {ProfileDiagnostic{file, 0, 0, "", *problem, ""}, stored_copy_fix(file, *stored)});
    }
  }

  OverrideApplier applier(document, diagnostics);
  for (std::size_t i = 0; i < options.overrides.size(); ++i) {
    applier.apply(i, options.overrides[i]);
  }

  const fs::path source = origin.empty() ? fs::path() : fs::absolute(origin).lexically_normal();
  const fs::path base_dir = origin.empty() ? fs::current_path() : source.parent_path();
  const FileChecker& files = options.files != nullptr ? *options.files : real_file_checker();
  ProfileValidator validator(diagnostics, files, base_dir);
  Profile profile = validator.validate(document, origin, options);
  if (!diagnostics.empty()) return fail();
  profile.source = source;
  return profile;
}

std::string read_profile_text(const std::filesystem::path& path) {
  auto fail = [&](std::string message) -> std::string {
    throw ProfileError({ProfileDiagnostic{path.string(), 0, 0, "", std::move(message), ""}});
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return fail("cannot read the profile: " + std::generic_category().message(errno));
  }
  // Read in chunks rather than trusting st_size, so pipes (<(...)) work too.
  std::string text;
  std::array<char, 65536> buffer;
  int error = 0;
  while (text.size() <= kMaxProfileBytes) {
    const ssize_t count = ::read(fd, buffer.data(), buffer.size());
    if (count < 0) {
      if (errno == EINTR) continue;
      error = errno;
      break;
    }
    if (count == 0) break;
    text.append(buffer.data(), static_cast<std::size_t>(count));
  }
  ::close(fd);
  if (error != 0) return fail("cannot read the profile: " + std::generic_category().message(error));
  if (text.size() > kMaxProfileBytes) {
    return fail("the profile is larger than 1 MiB; is this the right file?");
  }
  return text;
}

}  // namespace

Profile parse_profile(std::string_view text, const std::filesystem::path& origin,
                      const ProfileOptions& options) {
  return parse_profile_text(text, origin, options, nullptr);
}

Profile load_profile(const std::filesystem::path& path, const ProfileOptions& options) {
  return parse_profile_text(read_profile_text(path), path, options, nullptr);
}

Profile load_stored_profile(const std::filesystem::path& path, std::string_view vm) {
  const StoredCopy stored{std::string(vm)};
  std::string text;
  try {
    text = read_profile_text(path);
  } catch (const ProfileError& e) {
    std::vector<ProfileDiagnostic> found = e.diagnostics();
    found.push_back(stored_copy_fix(path.string(), stored));
    throw ProfileError(std::move(found));
  }
  return parse_profile_text(text, path, {}, &stored);
}

}  // namespace qvm
