#include "supervisor/io_error.hpp"

#include <algorithm>
#include <cctype>
#include <regex>

namespace qvm::supervisor {

namespace {

std::string text_member(const nlohmann::json& data, const char* key) {
  if (!data.is_object()) return "";
  auto it = data.find(key);
  return it != data.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

std::optional<std::string> io_error_disk(const nlohmann::json& data) {
  static const std::regex disk_node("(disk[0-9]{1,4})(-format|-storage|-s[0-9]{1,9})?");
  for (const char* key : {"node-name", "device"}) {
    const std::string name = text_member(data, key);
    std::smatch match;
    if (std::regex_match(name, match, disk_node)) return match[1].str();
  }
  return std::nullopt;
}

bool io_error_stops_vm(const nlohmann::json& data) { return text_member(data, "action") == "stop"; }

std::string io_error_reason(const nlohmann::json& data) {
  if (auto disk = io_error_disk(data)) return "I/O error on " + *disk;
  for (const char* key : {"node-name", "device"}) {
    const std::string name = text_member(data, key);
    // QEMU's node names are [A-Za-z0-9._-]: anything else is not repeated to the user.
    const bool plain = std::all_of(name.begin(), name.end(), [](unsigned char c) {
      return std::isalnum(c) || c == '-' || c == '_' || c == '.';
    });
    if (!name.empty() && name.size() <= 64 && plain) return "I/O error on " + name;
  }
  return "I/O error";
}

}  // namespace qvm::supervisor
