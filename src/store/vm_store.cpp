#include "store/vm_store.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "profile/stored_profile.hpp"
#include "store/layout.hpp"

namespace qvm::store {
namespace fs = std::filesystem;

VmStore::VmStore(fs::path state_root, fs::path runtime_root)
    : root_(std::move(state_root)), runtime_root_(std::move(runtime_root)) {}

void VmStore::check_name(std::string_view name) {
  if (!is_valid_name(name)) {
    throw UsageError("\"" + std::string(name) +
                     "\" is not a VM name: use 1-63 letters, digits, '.', '_' or '-', starting "
                     "with a letter or digit");
  }
}

fs::path VmStore::vm_dir(std::string_view name) const { return paths(name).state_dir; }

RunPaths VmStore::paths(std::string_view name) const {
  return run_paths(root_, runtime_root_, name);
}

std::vector<std::string> VmStore::names() const {
  std::vector<std::string> result;
  std::error_code ec;
  for (fs::directory_iterator it(vms_dir(root_), ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec) && fs::exists(RunPaths{it->path(), {}}.profile(), ec)) {
      result.push_back(it->path().filename().string());
    }
  }
  std::sort(result.begin(), result.end());
  return result;
}

bool VmStore::defined(std::string_view name) const {
  std::error_code ec;
  return fs::exists(paths(name).profile(), ec);
}

VmStatus VmStore::define(const Profile& profile) {
  check_name(profile.name);
  make_private_dir(root_);
  make_private_dir(vms_dir(root_));
  const RunPaths files = paths(profile.name);
  const fs::path dir = files.state_dir;
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
  if (read_file_if_exists(files.profile()) != text) write_file_atomically(files.profile(), text);

  VmStatus status = existing.value_or(VmStatus{});
  if (!existing || !fs::exists(files.state())) {
    status.state = VmState::stopped;
    status.reason = "defined";
    status.reason_code = "defined";
  }
  status.name = profile.name;
  status.uuid = *resolved.uuid;
  status.state_dir = dir;
  status.runtime_dir = files.runtime_dir;
  status.memory_mib = profile.memory_mib;
  status.cpus = profile.cpus;
  write_status(status);
  return status;
}

Profile VmStore::load_profile(std::string_view name) const {
  check_name(name);
  const fs::path file = paths(name).profile();
  if (!defined(name)) throw Error("no VM named \"" + std::string(name) + "\" (see qvm ls)");
  return load_stored_profile(file, name);
}

std::optional<VmStatus> VmStore::read_status(std::string_view name, std::string* broken) const {
  if (broken) broken->clear();
  if (!defined(name)) return std::nullopt;
  const fs::path file = paths(name).state();
  VmStatus fallback;
  fallback.name = std::string(name);
  fallback.state_dir = vm_dir(name);
  fallback.runtime_dir = paths(name).runtime_dir;
  fallback.reason = "defined";
  fallback.reason_code = "defined";
  std::string problem;
  try {
    auto text = read_file_if_exists(file);
    if (!text) return fallback;
    const auto json = nlohmann::json::parse(*text, nullptr, false);
    if (text->empty()) {
      problem = "it is empty";
    } else if (json.is_discarded()) {
      problem = "it is not JSON (cut short, or edited by hand)";
    } else {
      VmStatus status = VmStatus::from_json(json);
      if (status.name != name) {
        // Never a path to write to: the folder, not the file, says which VM this is.
        problem = "its \"name\" is " + nlohmann::json(status.name).dump() + ", not the folder's name \"" +
                  std::string(name) + "\"";
      } else {
        status.state_dir = fallback.state_dir;
        status.runtime_dir = fallback.runtime_dir;
        return status;
      }
    }
  } catch (const std::exception& e) {
    problem = e.what();
    if (problem.rfind("state: ", 0) == 0) problem.erase(0, 7);
  }
  // Atomic writes make this unreachable short of disk corruption or an editor; stay usable.
  fallback.reason = file.string() + " is broken: " + problem;
  fallback.reason_code = "state-unreadable";
  if (broken) *broken = fallback.reason;
  return fallback;
}

void VmStore::write_status(const VmStatus& status, ReplacedFiles* replaced) const {
  // The name picks the folder: it must be a name, never a path.
  check_name(status.name);
  const fs::path file = paths(status.name).state();
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

FileLock VmStore::lock_operations(std::string_view name, std::string_view what, LockMode mode) const {
  auto gone = [&] { return Error("no VM named \"" + std::string(name) + "\" (see qvm ls)"); };
  if (mode == LockMode::existing && !defined(name)) throw gone();
  const fs::path path = paths(name).operation_lock();
  auto attempt = [&]() -> std::optional<FileLock> {
    try {
      // `qvm rm` may have removed the folder while we waited: a define makes it again.
      if (mode == LockMode::create) make_private_dir(vm_dir(name));
      return try_lock_operations(name, what);
    } catch (const Error&) {
      // `qvm rm` deleted the folder while we waited for it.
      if (mode == LockMode::existing && !defined(name)) throw gone();
      throw;
    }
  };
  // A child this process forks (qemu-img, a supervisor) holds a copy of every open lock
  // until it execs, so a lock just released by another thread can look taken for a few
  // milliseconds, longer on a loaded host: retry briefly before calling it busy.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  auto lock = attempt();
  while (!lock && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    lock = attempt();
  }
  if (!lock) {
    std::string holder = FileLock::holder(path);
    throw BusyError("another qvm command is working on VM \"" + std::string(name) + "\"" +
                    (holder.empty() ? "" : ": " + holder) + "; wait for it and try again");
  }
  // The lock may be that of a folder `qvm rm` removed just before we took it.
  if (mode == LockMode::existing && !defined(name)) throw gone();
  return std::move(*lock);
}

std::optional<FileLock> VmStore::try_lock_operations(std::string_view name, std::string_view what) const {
  return FileLock::try_acquire(paths(name).operation_lock(),
                               std::string(what) + " (pid " + std::to_string(::getpid()) + ")");
}

fs::path VmStore::supervisor_lock(std::string_view name) const {
  return paths(name).supervisor_lock();
}

bool VmStore::supervisor_alive(std::string_view name) const {
  return FileLock::is_held(supervisor_lock(name));
}

void VmStore::append_event(std::string_view name, const nlohmann::json& entry, std::uint64_t max_size) const {
  append_to_log(paths(name).events(), entry.dump(), max_size);
}

void VmStore::remove(std::string_view name) const {
  check_name(name);
  std::error_code ec;
  fs::remove_all(paths(name).runtime_dir, ec);
  fs::remove_all(vm_dir(name), ec);
  if (ec) throw Error("cannot remove " + vm_dir(name).string() + ": " + ec.message());
}

}  // namespace qvm::store
