#include "profile/toml_text.hpp"

#include <array>

namespace qvm::profile {

std::string toml_quote(std::string_view text) {
  static constexpr std::array<char, 17> kHex{"0123456789ABCDEF"};
  std::string quoted = "\"";
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        quoted += "\\\"";
        break;
      case '\\':
        quoted += "\\\\";
        break;
      case '\b':
        quoted += "\\b";
        break;
      case '\t':
        quoted += "\\t";
        break;
      case '\n':
        quoted += "\\n";
        break;
      case '\f':
        quoted += "\\f";
        break;
      case '\r':
        quoted += "\\r";
        break;
      default:
        if (byte < 0x20 || byte == 0x7F) {
          quoted += "\\u00";
          quoted += kHex[byte >> 4];
          quoted += kHex[byte & 0xF];
        } else {
          quoted += c;
        }
    }
  }
  return quoted + '"';
}

bool is_bare_key(std::string_view key) {
  if (key.empty()) return false;
  for (char c : key) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string join_key(std::string_view prefix, std::string_view key) {
  std::string joined(prefix);
  if (!joined.empty()) joined += '.';
  if (is_bare_key(key)) {
    joined += key;
  } else {
    joined += toml_quote(key);
  }
  return joined;
}

}  // namespace qvm::profile
