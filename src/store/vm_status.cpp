#include <array>
#include <cctype>

#include "command_line/run_paths.hpp"
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

// nlohmann's own type errors name neither the key nor the file: every read says which key.
std::string read_string(const nlohmann::json& json, const char* key) {
  if (!json.contains(key)) throw Error(std::string("state: \"") + key + "\" is missing");
  if (!json.at(key).is_string()) throw Error(std::string("state: \"") + key + "\" is not a string");
  return json.at(key).get<std::string>();
}

std::string read_string(const nlohmann::json& json, const char* key, const char* absent) {
  return json.contains(key) ? read_string(json, key) : absent;
}

bool read_bool(const nlohmann::json& json, const char* key, bool absent) {
  if (!json.contains(key)) return absent;
  if (!json.at(key).is_boolean()) throw Error(std::string("state: \"") + key + "\" is not true or false");
  return json.at(key).get<bool>();
}

std::optional<std::chrono::system_clock::time_point> read_optional_time(const nlohmann::json& json,
                                                                        const char* key) {
  if (!json.contains(key) || json.at(key).is_null()) return std::nullopt;
  auto time = store::parse_time(read_string(json, key));
  if (!time) throw Error(std::string("state: bad time in \"") + key + "\"");
  return time;
}

// 8-4-4-4-12 hex digits: the uuid goes to QEMU's command line and into the next define.
bool is_uuid(const std::string& text) {
  if (text.size() != 36) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? text[i] != '-' : !std::isxdigit(static_cast<unsigned char>(text[i]))) return false;
  }
  return true;
}

// The identity is all four keys or none (a file of an older qvm, or no QEMU running).
std::optional<QemuIdentity> read_identity(const nlohmann::json& json) {
  if (!json.contains("qemu_start_time") || json.at("qemu_start_time").is_null()) return std::nullopt;
  QemuIdentity identity;
  identity.start_time = read_int<std::uint64_t>(json, "qemu_start_time");
  identity.boot_id = read_string(json, "qemu_boot_id");
  identity.exe = read_string(json, "qemu_exe");
  identity.uid = read_int<unsigned>(json, "qemu_uid");
  return identity;
}

}  // namespace

bool is_active(VmState state) {
  return state == VmState::starting || state == VmState::running || state == VmState::paused ||
         state == VmState::stopping;
}

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
  const RunPaths files{state_dir, runtime};
  auto socket = [&](const std::filesystem::path& path) {
    return runtime.empty() ? nlohmann::json(nullptr) : nlohmann::json(path.string());
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
      {"qemu_start_time", pid && qemu ? nlohmann::json(qemu->start_time) : nlohmann::json(nullptr)},
      {"qemu_boot_id", pid && qemu ? nlohmann::json(qemu->boot_id) : nlohmann::json(nullptr)},
      {"qemu_exe", pid && qemu ? nlohmann::json(qemu->exe.string()) : nlohmann::json(nullptr)},
      {"qemu_uid", pid && qemu ? nlohmann::json(qemu->uid) : nlohmann::json(nullptr)},
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
       {{"qmp", socket(files.client_qmp())},
        {"console", socket(files.console_socket())},
        {"agent", socket(files.agent_socket())},
        {"control", socket(files.control_socket())}}},
  };
}

VmStatus VmStatus::from_json(const nlohmann::json& json) {
  if (!json.is_object()) throw Error("state: not a JSON object");
  try {
    VmStatus status;
    status.name = read_string(json, "name");
    status.uuid = read_string(json, "uuid");
    if (!status.uuid.empty() && !is_uuid(status.uuid)) throw Error("state: \"uuid\" is not a UUID");
    const std::string state_text = read_string(json, "state");
    auto state = parse_vm_state(state_text);
    if (!state) throw Error("state: unknown state \"" + state_text + "\"");
    status.state = *state;
    status.reason = read_string(json, "reason", "");
    status.reason_code = read_string(json, "reason_code", "");
    status.pid = read_optional_int(json, "pid");
    if (status.pid) status.qemu = read_identity(json);
    status.supervisor_pid = read_optional_int(json, "supervisor_pid");
    status.accel = read_string(json, "accel", "");
    status.started_at = read_optional_time(json, "started_at");
    status.stopped_at = read_optional_time(json, "stopped_at");
    status.exit_code = read_optional_int(json, "exit_code");
    status.exit_signal = read_optional_int(json, "exit_signal");
    status.ready = read_bool(json, "ready", false);
    status.restarts = read_int(json, "restarts", 0);
    status.last_down_step = read_string(json, "last_down_step", "");
    status.memory_mib = read_int(json, "memory_mib", std::uint64_t{0});
    status.cpus = read_int(json, "cpus", 0u);
    status.state_dir = read_string(json, "state_dir", "");
    status.runtime_dir = read_string(json, "runtime_dir", "");
    return status;
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("state: ") + e.what());
  }
}

}  // namespace qvm
