#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "command_line/run_paths.hpp"
#include "qvm/profile.hpp"
#include "qvm/vm.hpp"
#include "store/files.hpp"
#include "store/log_rotation.hpp"

namespace qvm::store {

/// Another qvm process is already operating on the VM.
class BusyError : public Error {
 public:
  using Error::Error;
};

/// The VMs under one state root: `<root>/vms/<name>/` (0700) holding profile.toml (the
/// resolved profile), state.json, events.jsonl, serial.log, qemu.log and the locks.
/// Safe to use from several processes at once: writes are atomic, mutations are locked.
class VmStore {
 public:
  VmStore(std::filesystem::path state_root, std::filesystem::path runtime_root);

  const std::filesystem::path& root() const { return root_; }
  /// Where this user's QEMU probe is remembered (in the runtime root: gone after a reboot).
  std::filesystem::path qemu_probe_cache() const { return qvm::qemu_probe_cache(runtime_root_); }
  /// The files of VM `name` (it need not exist).
  RunPaths paths(std::string_view name) const;
  /// Names of every defined VM, sorted.
  std::vector<std::string> names() const;
  bool defined(std::string_view name) const;

  /// Creates or updates the VM's folder with the resolved profile. The VM keeps the UUID it
  /// was first given (the profile's uuid, else one derived from host, root and name).
  /// Returns the VM's status (stopped/defined for a new VM).
  VmStatus define(const Profile& profile);

  /// The stored resolved profile. Throws qvm::Error if `name` is not defined, and
  /// ProfileError naming the file and the fix if it is not a whole profile of this VM.
  Profile load_profile(std::string_view name) const;

  /// state.json of `name`, nullopt if the VM is not defined. A missing state file of a
  /// defined VM yields a stopped status, never an exception; so does a broken one (not
  /// JSON, wrong types, or a "name" other than the folder's), with reason_code
  /// "state-unreadable" and a reason naming the file, also put in `*broken` ("" otherwise).
  /// state_dir and runtime_dir are always the VM's own, whatever the file says.
  std::optional<VmStatus> read_status(std::string_view name, std::string* broken = nullptr) const;
  /// Replaces vms/<status.name>/state.json atomically; see write_file_atomically for
  /// `replaced`. Throws UsageError if status.name is not a VM name (a path, "..").
  void write_status(const VmStatus& status, ReplacedFiles* replaced = nullptr) const;

  /// Whether lock_operations may create the VM's folder (define) or needs a defined VM.
  enum class LockMode { create, existing };
  /// Takes the VM's operation lock (up, start, rm, snapshot...). Throws BusyError naming
  /// the holder when another qvm process has it. With LockMode::existing, throws
  /// qvm::Error ("no VM named") if the VM is not defined, or was removed while waiting.
  FileLock lock_operations(std::string_view name, std::string_view what,
                           LockMode mode = LockMode::create) const;
  /// Takes the VM's operation lock if no one holds it, at once and without creating the
  /// folder; nullopt when another process holds it. `what` (plus this pid) is the holder
  /// other commands name. Throws qvm::Error if the lock file cannot be opened. This and
  /// lock_operations are the only ways qvm takes that lock.
  std::optional<FileLock> try_lock_operations(std::string_view name, std::string_view what) const;
  /// The path of the lock the VM's supervisor holds for its whole life.
  std::filesystem::path supervisor_lock(std::string_view name) const;
  /// True if a supervisor process is alive for `name`.
  bool supervisor_alive(std::string_view name) const;

  /// Appends one journal entry to events.jsonl; once the file reaches `max_size` (the
  /// profile's logs.max_size) it is rotated to events.jsonl.1, replacing the previous one.
  void append_event(std::string_view name, const nlohmann::json& entry,
                    std::uint64_t max_size = kDefaultLogMaxSize) const;

  /// Deletes the VM's folder and runtime folder. The caller has stopped the VM.
  void remove(std::string_view name) const;

  /// Throws UsageError unless `name` is a valid VM name.
  static void check_name(std::string_view name);

 private:
  std::filesystem::path vm_dir(std::string_view name) const;
  std::filesystem::path root_;
  std::filesystem::path runtime_root_;
};

}  // namespace qvm::store
