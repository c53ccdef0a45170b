#include "profile/checks.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>

#include "profile/toml_text.hpp"

namespace qvm::profile {
namespace {

namespace fs = std::filesystem;

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

bool is_mount_tag_character(char c) {
  return is_alnum(c) || c == '_' || c == '-';
}

}  // namespace

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
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return lower_or_underscore(c) || is_digit(c) || c == '-'; });
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

}  // namespace qvm::profile
