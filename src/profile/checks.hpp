#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "qvm/profile.hpp"

// The pure checks of profile values: no TOML, no filesystem, no diagnostics. Each says
// only whether a text is acceptable (or, for forward rules, what is wrong with it).
namespace qvm::profile {

inline constexpr std::size_t kMaxInterfaceName = 15;  // IFNAMSIZ - 1
inline constexpr std::size_t kMaxHostname = 253;      // RFC 1035, without the trailing dot
inline constexpr std::size_t kMaxHostnameLabel = 63;
inline constexpr std::size_t kMaxUserName = 32;  // useradd's limit
inline constexpr std::size_t kMaxMountTag = 31;  // virtio-9p's tag field, less its terminator

/// ASCII `text` in lower case (other bytes unchanged).
std::string lowercase(std::string_view text);

/// `value` as "U+XXXX" (four upper-case hex digits).
std::string hex4(unsigned value);

/// The first C0 or C1 control character (or DEL) in UTF-8 `text`, as a code point.
std::optional<unsigned> first_control_character(std::string_view text);

/// `text` cut at every `separator`; always at least one (possibly empty) part.
std::vector<std::string_view> split(std::string_view text, char separator);

/// True for the canonical 8-4-4-4-12 form of a UUID (hex digits, either case).
bool is_canonical_uuid(std::string_view text);

/// True for a QEMU CPU model with flags: letters, digits and . _ + = , - (at least one).
bool is_valid_cpu_model(std::string_view text);

/// True for a Linux network interface name: 1 to 15 bytes, no "/", ":" or white space.
bool is_valid_interface_name(std::string_view name);

/// True for an RFC 1123 host name: dot-separated labels of 1 to 63 letters, digits and
/// "-", none starting or ending with "-", 253 bytes at most.
bool is_valid_hostname(std::string_view name);

/// True for a user name that Debian's adduser (and cloud-init's useradd) accepts.
bool is_valid_user_name(std::string_view name);

/// True for a virtio-9p mount tag: 1 to 31 letters, digits, "_" or "-".
bool is_valid_mount_tag(std::string_view tag);

/// The tag a share gets from its folder's name: other characters become "_", cut to 31;
/// "share<index>" when the folder has no name.
std::string default_mount_tag(const std::filesystem::path& folder, std::size_t index);

/// True for "TYPE BASE64 [COMMENT]" with a key type OpenSSH writes into .pub files.
bool is_ssh_public_key(std::string_view key);

/// True for six colon-separated hex pairs, such as "52:54:00:12:34:56".
bool is_mac_syntax(std::string_view text);

/// True if the first octet of a MAC address (is_mac_syntax) is even: not multicast.
bool is_unicast_mac(std::string_view mac);

/// True for a dotted quad, each part 0..255 without leading zeros.
bool is_ipv4(std::string_view text);

/// Reads "[tcp:|udp:][ADDR:]HOSTPORT:GUESTPORT"; on failure, the sentence saying what is
/// wrong (starting with the quoted rule).
std::variant<PortForward, std::string> read_forward(std::string_view rule);

/// True if the two rules cannot both listen: same protocol and port, and the same address
/// or one of them 0.0.0.0.
bool forwards_collide(const PortForward& a, const PortForward& b);

}  // namespace qvm::profile
