#include "store/vm_store.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <regex>

#include "store/layout.hpp"

namespace qvm::store {
namespace fs = std::filesystem;

VmStore::VmStore(fs::path state_root, fs::path runtime_root)
    : root_(std::move(state_root)), runtime_root_(std::move(runtime_root)) {}

void VmStore::check_name(std::string_view name) {
  static const std::regex valid("[A-Za-z0-9][A-Za-z0-9._-]{0,62}");
  if (!std::regex_match(name.begin(), name.end(), valid)) {
    throw UsageError("\"" + std::string(name) +
                     "\" is not a VM name: use 1-63 letters, digits, '.', '_' or '-', starting "
                     "with a letter or digit");
  }
}

fs::path VmStore::vm_dir(std::string_view name) const { return root_ / "vms" / std::string(name); }

RunPaths VmStore::paths(std::string_view name) const {
  return run_paths(root_, runtime_root_, name);
}

std::vector<std::string> VmStore::names() const {
  std::vector<std::string> result;
  std::error_code ec;
  for (fs::directory_iterator it(root_ / "vms", ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec) && fs::exists(it->path() / "profile.toml", ec)) {
      result.push_back(it->path().filename().string());
    }
  }
  std::sort(result.begin(), result.end());
  return result;
}

bool VmStore::defined(std::string_view name) const {
  std::error_code ec;
  return fs::exists(vm_dir(name) / "profile.toml", ec);
}

VmStatus VmStore::define(const Profile& profile) {
  check_name(profile.name);
  make_private_dir(root_);
  make_private_dir(root_ / "vms");
  const fs::path dir = vm_dir(profile.name);
  make_private_dir(dir);

  std::optional<VmStatus> existing = read_status(profile.name);
  Profile resolved = profile;
  if (existing && !existing->uuid.empty() && !profile.uuid) {
    resolved.uuid = existing->uuid;
  } else if (!resolved.uuid) {
    resolved.uuid = derive_uuid(host_id(), root_, profile.name);
  }
  // Re-defining with the same profile (every `qvm up` of a defined VM) writes nothing: two
  // fsyncs and a rename are a visible part of a start.
  const std::string text = to_toml(resolved);
  if (read_file_if_exists(dir / "profile.toml") != text) write_file_atomically(dir / "profile.toml", text);

  VmStatus status = existing.value_or(VmStatus{});
  if (!existing || !fs::exists(dir / "state.json")) {
    status.state = VmState::stopped;
    status.reason = "defined";
    status.reason_code = "defined";
  }
  status.name = profile.name;
  status.uuid = *resolved.uuid;
  status.state_dir = dir;
  status.runtime_dir = paths(profile.name).runtime_dir;
  status.memory_mib = profile.memory_mib;
  status.cpus = profile.cpus;
  write_status(status);
  return status;
}

Profile VmStore::load_profile(std::string_view name) const {
  check_name(name);
  const fs::path file = vm_dir(name) / "profile.toml";
  if (!defined(name)) throw Error("no VM named \"" + std::string(name) + "\" (see qvm ls)");
  return qvm::load_profile(file);
}

std::optional<VmStatus> VmStore::read_status(std::string_view name) const {
  if (!defined(name)) return std::nullopt;
  VmStatus fallback;
  fallback.name = std::string(name);
  fallback.state_dir = vm_dir(name);
  fallback.runtime_dir = paths(name).runtime_dir;
  fallback.reason = "defined";
  fallback.reason_code = "defined";
  try {
    auto text = read_file_if_exists(vm_dir(name) / "state.json");
    if (!text) return fallback;
    return VmStatus::from_json(nlohmann::json::parse(*text));
  } catch (const std::exception& e) {
    // Atomic writes make this unreachable short of disk corruption; stay usable anyway.
    fallback.reason = std::string("state.json unreadable: ") + e.what();
    fallback.reason_code = "state-unreadable";
    return fallback;
  }
}

void VmStore::write_status(const VmStatus& status, ReplacedFiles* replaced) const {
  const fs::path file = vm_dir(status.name) / "state.json";
  const std::string text = status.to_json().dump(2) + "\n";
  // Unchanged (a re-define, a repeated save): the file on disk already says it.
  // A running VM does not outlive a power loss, and after one reconcile_status finds it
  // vanished whatever the file says; only the states a VM rests in must reach the disk.
  const bool resting = status.state == VmState::stopped || status.state == VmState::crashed;
  if (read_file_if_exists(file) != text) {
    write_file_atomically(file, text, fs::perms::owner_read | fs::perms::owner_write,
                          resting ? Durability::durable : Durability::atomic, replaced);
  }
}

FileLock VmStore::lock_operations(std::string_view name, std::string_view what) const {
  make_private_dir(vm_dir(name));
  const fs::path path = vm_dir(name) / "operation.lock";
  const std::string holder_text = std::string(what) + " (pid " + std::to_string(::getpid()) + ")";
  // A child this process forks (qemu-img, a supervisor) holds a copy of every open lock
  // until it execs, so a lock just released by another thread can look taken for a few
  // milliseconds, longer on a loaded host: retry briefly before calling it busy.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  auto lock = FileLock::try_acquire(path, holder_text);
  while (!lock && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    lock = FileLock::try_acquire(path, holder_text);
  }
  if (!lock) {
    std::string holder = FileLock::holder(path);
    throw BusyError("another qvm command is working on VM \"" + std::string(name) + "\"" +
                    (holder.empty() ? "" : ": " + holder) + "; wait for it and try again");
  }
  return std::move(*lock);
}

fs::path VmStore::supervisor_lock(std::string_view name) const {
  return vm_dir(name) / "supervisor.lock";
}

bool VmStore::supervisor_alive(std::string_view name) const {
  return FileLock::is_held(supervisor_lock(name));
}

void VmStore::append_event(std::string_view name, const nlohmann::json& entry) const {
  append_line(vm_dir(name) / "events.jsonl", entry.dump());
}

void VmStore::remove(std::string_view name) const {
  check_name(name);
  std::error_code ec;
  fs::remove_all(paths(name).runtime_dir, ec);
  fs::remove_all(vm_dir(name), ec);
  if (ec) throw Error("cannot remove " + vm_dir(name).string() + ": " + ec.message());
}

}  // namespace qvm::store
