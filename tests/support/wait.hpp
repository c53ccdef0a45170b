#pragma once

// Conditions that tests wait for (with testing::eventually) instead of sleeping a fixed time.
#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace qvm::testing {

/// Whether process `pid` exists and has not exited; a zombie (exited, not yet reaped) has.
inline bool process_running(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return false;
  // The state follows the command name, which is in parentheses and may contain anything.
  const auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  const char state = stat[close + 2];
  return state != 'Z' && state != 'X';
}

/// Whether the event journal `events_jsonl` holds an event named `event` whose data has
/// every field of `data` with the same value. A missing file or a torn last line is no match.
inline bool journal_has(const std::filesystem::path& events_jsonl, const std::string& event,
                        const nlohmann::json& data = nlohmann::json::object()) {
  std::ifstream in(events_jsonl);
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json entry = nlohmann::json::parse(line, nullptr, false);
    if (entry.is_discarded() || !entry.is_object() || entry.value("event", "") != event) continue;
    const nlohmann::json fields = entry.value("data", nlohmann::json::object());
    bool all = true;
    for (const auto& [key, value] : data.items()) all = all && fields.contains(key) && fields[key] == value;
    if (all) return true;
  }
  return false;
}

}  // namespace qvm::testing
