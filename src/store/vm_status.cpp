#include <array>

#include "qvm/vm.hpp"
#include "store/files.hpp"
#include "store/json_int.hpp"

namespace qvm {
namespace {

constexpr std::array<std::pair<VmState, std::string_view>, 6> kStates{{
    {VmState::stopped, "stopped"},
    {VmState::starting, "starting"},
    {VmState::running, "running"},
    {VmState::paused, "paused"},
    {VmState::stopping, "stopping"},
    {VmState::crashed, "crashed"},
}};

nlohmann::json optional_int(const std::optional<int>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

nlohmann::json optional_time(const std::optional<std::chrono::system_clock::time_point>& value) {
  return value ? nlohmann::json(store::format_time(*value)) : nlohmann::json(nullptr);
}

template <typename Int>
Int read_int(const nlohmann::json& json, const char* key) {
  const std::optional<Int> result = store::json_int<Int>(json.at(key));
  if (!result) throw Error(std::string("state: \"") + key + "\" is not an integer in range");
  return *result;
}

template <typename Int>
Int read_int(const nlohmann::json& json, const char* key, Int absent) {
  return json.contains(key) ? read_int<Int>(json, key) : absent;
}

std::optional<int> read_optional_int(const nlohmann::json& json, const char* key) {
  if (!json.contains(key) || json.at(key).is_null()) return std::nullopt;
  return read_int<int>(json, key);
}

std::optional<std::chrono::system_clock::time_point> read_optional_time(const nlohmann::json& json,
                                                                        const char* key) {
  if (!json.contains(key) || json.at(key).is_null()) return std::nullopt;
  auto time = store::parse_time(json.at(key).get<std::string>());
  if (!time) throw Error(std::string("state: bad time in \"") + key + "\"");
  return time;
}

}  // namespace

std::string_view to_string(VmState state) {
  for (const auto& [value, name] : kStates) {
    if (value == state) return name;
  }
  return "stopped";
}

std::optional<VmState> parse_vm_state(std::string_view text) {
  for (const auto& [value, name] : kStates) {
    if (name == text) return value;
  }
  return std::nullopt;
}

nlohmann::json VmStatus::to_json() const {
  const auto runtime = runtime_dir.empty() ? std::filesystem::path() : runtime_dir;
  auto socket = [&](const char* file) {
    return runtime.empty() ? nlohmann::json(nullptr) : nlohmann::json((runtime / file).string());
  };
  std::optional<double> uptime;
  if (started_at && (state == VmState::running || state == VmState::paused ||
                     state == VmState::starting || state == VmState::stopping)) {
    uptime = std::chrono::duration<double>(std::chrono::system_clock::now() - *started_at).count();
  }
  return {
      {"version", 1},
      {"name", name},
      {"uuid", uuid},
      {"state", std::string(to_string(state))},
      {"reason", reason},
      {"reason_code", reason_code},
      {"pid", optional_int(pid)},
      {"supervisor_pid", optional_int(supervisor_pid)},
      {"accel", accel},
      {"started_at", optional_time(started_at)},
      {"stopped_at", optional_time(stopped_at)},
      {"uptime_seconds", uptime ? nlohmann::json(static_cast<std::int64_t>(*uptime)) : nlohmann::json(nullptr)},
      {"exit_code", optional_int(exit_code)},
      {"exit_signal", optional_int(exit_signal)},
      {"ready", ready},
      {"restarts", restarts},
      {"last_down_step", last_down_step},
      {"memory_mib", memory_mib},
      {"cpus", cpus},
      {"state_dir", state_dir.string()},
      {"runtime_dir", runtime_dir.string()},
      {"sockets",
       {{"qmp", socket("qmp.sock")},
        {"console", socket("console.sock")},
        {"agent", socket("agent.sock")},
        {"control", socket("control.sock")}}},
  };
}

VmStatus VmStatus::from_json(const nlohmann::json& json) {
  try {
    VmStatus status;
    status.name = json.at("name").get<std::string>();
    status.uuid = json.at("uuid").get<std::string>();
    auto state = parse_vm_state(json.at("state").get<std::string>());
    if (!state) throw Error("state: unknown state \"" + json.at("state").get<std::string>() + "\"");
    status.state = *state;
    status.reason = json.value("reason", "");
    status.reason_code = json.value("reason_code", "");
    status.pid = read_optional_int(json, "pid");
    status.supervisor_pid = read_optional_int(json, "supervisor_pid");
    status.accel = json.value("accel", "");
    status.started_at = read_optional_time(json, "started_at");
    status.stopped_at = read_optional_time(json, "stopped_at");
    status.exit_code = read_optional_int(json, "exit_code");
    status.exit_signal = read_optional_int(json, "exit_signal");
    status.ready = json.value("ready", false);
    status.restarts = read_int(json, "restarts", 0);
    status.last_down_step = json.value("last_down_step", "");
    status.memory_mib = read_int(json, "memory_mib", std::uint64_t{0});
    status.cpus = read_int(json, "cpus", 0u);
    status.state_dir = json.value("state_dir", "");
    status.runtime_dir = json.value("runtime_dir", "");
    return status;
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("state: ") + e.what());
  }
}

}  // namespace qvm
