#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qvm/error.hpp"
#include "qvm/profile.hpp"

namespace qvm {

/// The life stage of a VM, as `qvm ls` and `qvm status` print it.
enum class VmState { stopped, starting, running, paused, stopping, crashed };

/// "stopped", "starting", "running", "paused", "stopping", "crashed".
std::string_view to_string(VmState state);
/// The inverse of to_string; nullopt for anything else.
std::optional<VmState> parse_vm_state(std::string_view text);
/// True while a QEMU may be alive for the VM: starting, running, paused or stopping.
bool is_active(VmState state);

/// What proves that a process is a VM's QEMU, read from /proc when qvm started it: a pid
/// alone is reused after the process ends, and a command line (`-uuid ...`) can be copied
/// by anyone. Pid, start time and boot id together name one process for the host's life.
struct QemuIdentity {
  std::uint64_t start_time = 0;  // field 22 of /proc/PID/stat: clock ticks after boot
  std::string boot_id;           // /proc/sys/kernel/random/boot_id when it was started
  std::filesystem::path exe;     // /proc/PID/exe when it was started
  unsigned uid = 0;              // the user QEMU runs as ([qemu] user, else qvm's)
  friend bool operator==(const QemuIdentity&, const QemuIdentity&) = default;
};

/// Everything qvm knows about one VM; this is also the state.json file, and what
/// `qvm status --json` prints (see the README for the schema).
struct VmStatus {
  std::string name;
  std::string uuid;
  VmState state = VmState::stopped;
  std::string reason;       // for people: "guest shutdown", "killed by signal 9 (SIGKILL)"
  std::string reason_code;  // for programs: see kReasonCodes in the README
  std::optional<int> pid;             // QEMU's pid while it runs
  std::optional<QemuIdentity> qemu;   // who `pid` is (kept only with a pid); absent in
                                      // files of older qvm versions
  std::optional<int> supervisor_pid;  // the supervisor's pid while it runs
  std::string accel;                  // "kvm" or "tcg" once started
  std::optional<std::chrono::system_clock::time_point> started_at;
  std::optional<std::chrono::system_clock::time_point> stopped_at;
  std::optional<int> exit_code;    // QEMU's exit code, when it exited
  std::optional<int> exit_signal;  // the signal that killed QEMU, when one did
  bool ready = false;              // the profile's [ready] conditions were met
  int restarts = 0;                // automatic restarts since `up`
  std::string last_down_step;      // "acpi", "quit", "sigterm", "sigkill" after `down`
  std::filesystem::path state_dir;
  std::filesystem::path runtime_dir;
  std::uint64_t memory_mib = 0;
  unsigned cpus = 0;

  /// The documented JSON form.
  nlohmann::json to_json() const;
  /// Reads the JSON form; throws qvm::Error naming the first bad field.
  static VmStatus from_json(const nlohmann::json& json);
};

/// How to start a VM.
struct StartOptions {
  /// Supervise in this thread until the VM stops (`qvm up --foreground`); otherwise a
  /// detached supervisor process runs the VM and start() returns once it is ready.
  bool foreground = false;
  /// Overrides the profile's [ready] timeout.
  std::optional<std::chrono::seconds> ready_timeout;
  /// Start progress as JSON objects {"phase": "starting" | "warning" | "qmp-ready" |
  /// "waiting" | "ready" | "failed", ...}; called on the starting thread.
  std::function<void(const nlohmann::json&)> on_progress;
  /// With `foreground`: QEMU is killed if the thread that called start() ends, even by
  /// SIGKILL of the whole process, so that no VM outlives its owner (`qvm run`).
  bool die_with_caller = false;
  /// The qvm executable that runs detached supervisors; empty: this program if it is qvm,
  /// else $QVM_BINARY, else the installed one.
  std::filesystem::path qvm_binary;
};

/// What `down` did.
struct DownResult {
  std::string step;  // the ladder step that stopped QEMU: acpi, quit, sigterm, sigkill,
                     // or "already stopped"
  std::chrono::milliseconds elapsed{0};
  VmStatus status;   // after the stop
  std::string warning;  // what went wrong on the way that the user should hear about
                        // (the stored profile is broken: the default timeout was used)
};

/// One snapshot of a VM's disks.
struct SnapshotInfo {
  std::string name;
  std::string description;
  std::string created_at;             // RFC 3339 UTC
  std::optional<std::string> parent;  // the snapshot the VM was on when this one was taken
  std::string vm_state;               // running, paused or stopped when it was taken
  bool current = false;               // the VM's disks sit directly on this snapshot
  std::vector<std::filesystem::path> images;  // the frozen image of each disk

  nlohmann::json to_json() const;
};

/// Throws qvm::Error saying why unless `name` is a snapshot name (the VM-name rule).
void check_snapshot_name(const std::string& name);

/// What `up --dry-run` prints: the QEMU command line a start would run now.
struct DryRun {
  std::vector<std::string> argv;
  std::string shell;                  // argv quoted for a POSIX shell, on one line
  std::vector<std::string> warnings;  // for the user: a fallback to TCG, an ignored key...
};

/// A disk image that `rm --disks` left in place, and why.
struct KeptDisk {
  std::filesystem::path path;  // empty when the record of created disks itself is unreadable
  std::string reason;          // "it lies outside the VM's folder ...", or that record's error
};

/// The VM is running (or starting) and the operation needs it stopped, or the reverse.
class VmStateError : public Error {
 public:
  using Error::Error;
};

class Inventory;

/// One defined VM. Cheap to copy; every call reads the current state from disk, so
/// several processes can manage the same VM. Methods throw qvm::Error on failure.
class Vm {
 public:
  const std::string& name() const { return name_; }
  /// The current status, corrected if the supervisor and QEMU vanished.
  VmStatus status() const;
  /// The stored resolved profile.
  Profile profile() const;

  /// Starts the stopped VM from its stored profile; returns once it is ready (or, with
  /// StartOptions::foreground, once it has stopped again).
  VmStatus start(const StartOptions& options = {}) const;
  /// Walks the shutdown ladder: ACPI power button (repeated) until `timeout` (default: the
  /// profile's), then QMP quit, SIGTERM, SIGKILL. `force` skips the ACPI step.
  DownResult down(std::optional<std::chrono::seconds> timeout = std::nullopt, bool force = false,
                  const std::function<void(const std::string&)>& progress = {}) const;
  /// Stops QEMU at once with SIGKILL.
  VmStatus kill() const;
  /// Freezes / unfreezes the guest's CPUs (QMP stop / cont).
  void pause() const;
  void resume() const;
  /// Hard reset (QMP system_reset).
  void reset() const;
  /// Reboots the guest: through the guest agent when it answers, else a reset. Returns
  /// how: "agent" or "reset".
  std::string reboot() const;
  /// Runs argv in the guest through the guest agent (the profile needs agent = true),
  /// passing its output to the handlers as it is produced; returns its exit code. Throws
  /// VmStateError if the VM is not running or has no agent channel, qvm::Error (an
  /// AgentTimeout) if the agent does not answer.
  int exec(const std::vector<std::string>& argv, const std::function<void(std::string_view)>& on_stdout,
           const std::function<void(std::string_view)>& on_stderr, std::chrono::milliseconds timeout) const;
  /// Runs any QMP command on the client monitor and returns its "return" value.
  nlohmann::json qmp(const std::string& command,
                     const nlohmann::json& arguments = nlohmann::json::object()) const;
  /// The journal (events.jsonl), oldest first: every QMP event with its time, and qvm's own
  /// entries (QVM_START, QVM_READY, QVM_DOWN_STEP, QVM_EXIT, ...). A line that is not a JSON
  /// object with a string "event" (cut short by a full disk, edited by hand) is skipped.
  std::vector<nlohmann::json> journal() const;
  /// Waits until the journal holds an entry named `event` beyond its first `after` entries
  /// (pass journal().size() taken before acting) and returns it; nullopt after `timeout`.
  /// Reads the journal the supervisor writes, so it never occupies a QMP monitor.
  std::optional<nlohmann::json> wait_for_event(std::string_view event, std::size_t after,
                                               std::chrono::milliseconds timeout) const;
  /// Snapshots of the VM's writable qcow2 disks, oldest first.
  std::vector<SnapshotInfo> snapshots() const;
  /// The snapshot tree as `qvm snapshot ls` prints it, the current point marked with *
  /// ("no snapshots\n" when there are none). Throws qvm::Error if the metadata is broken.
  std::string snapshot_tree() const;
  /// Captures every writable disk at one instant: live (one QMP transaction) when the VM
  /// runs, with qemu-img when it is stopped. Refuses raw disks and duplicate names.
  SnapshotInfo snapshot_create(const std::string& name, const std::string& description = "") const;
  /// Returns the disks to the snapshot's state; a running VM is stopped and started again
  /// on fresh overlays over the snapshot's frozen images, which are never written.
  void snapshot_revert(const std::string& name, const StartOptions& restart = {}) const;
  /// Merges the snapshot away (live block-stream or qemu-img rebase) without changing what
  /// the guest or any other snapshot sees, and deletes the images nothing needs any more.
  void snapshot_remove(const std::string& name,
                       const std::function<void(const std::string&)>& progress = {}) const;

  /// Files of interest.
  std::filesystem::path serial_log() const;
  /// The journal's file (events.jsonl; journal() reads it across rotation).
  std::filesystem::path journal_file() const;
  std::filesystem::path qemu_log() const;
  std::filesystem::path console_socket() const;
  std::filesystem::path qmp_socket() const;

 private:
  friend class Inventory;
  Vm(std::shared_ptr<const Inventory> inventory, std::string name)
      : inventory_(std::move(inventory)), name_(std::move(name)) {}
  std::shared_ptr<const Inventory> inventory_;
  std::string name_;
};

/// The VMs under one state root (--state-dir / QVM_STATE_DIR / XDG defaults).
class Inventory : public std::enable_shared_from_this<Inventory> {
 public:
  /// Opens the state root `state_dir` or the default one; nothing is created yet.
  static std::shared_ptr<Inventory> open(std::optional<std::filesystem::path> state_dir = std::nullopt);
  ~Inventory();

  const std::filesystem::path& state_root() const;
  /// Creates or updates a VM from a validated profile (refused while it runs).
  Vm define(const Profile& profile) const;
  /// define() + start().
  Vm up(const Profile& profile, const StartOptions& options = {}) const;
  /// The QEMU command line up(profile) would run now, with the UUID the VM has (or would
  /// be given). Probes the host (QEMU binary, /dev/kvm; the probe is cached in the runtime
  /// root) but defines, starts and writes nothing else. Throws qvm::Error (a HostError) if
  /// the host cannot run the profile.
  DryRun dry_run(const Profile& profile) const;
  /// The body of the hidden `qvm __supervise` command that start() execs: detaches (fork;
  /// the calling process returns 0 at once), then supervises VM `name` in the child,
  /// reporting start progress as JSON lines on `notify_fd` (-1: none); with `attach_pid`
  /// it re-attaches to that running QEMU instead of starting one. Returns the supervisor's
  /// exit code in the detached child. Call it from a single-threaded process only.
  int supervise_detached(std::string_view name, int notify_fd,
                         std::optional<std::chrono::seconds> ready_timeout,
                         std::optional<int> attach_pid = std::nullopt) const;
  /// True if a VM named `name` is defined (its folder holds a profile).
  bool defined(std::string_view name) const;
  /// Defines the throwaway VM of `qvm run` from `profile` (a new name): accel "auto" must
  /// mean KVM here (else a HostError saying how to run under TCG), and every writable disk
  /// gets a fresh qcow2 overlay in the VM's folder, so the profile's images are never
  /// written. With `remove_when_stopped` the VM is marked so that list() removes it once it
  /// has stopped with no supervisor left. Throws qvm::Error if an overlay cannot be made.
  Vm define_transient(Profile profile, bool remove_when_stopped) const;
  /// For a process that outlives a `qvm run`: kills VM `name`'s QEMU if it provably still
  /// runs and, with `remove`, deletes the VM once that QEMU is gone. Best effort: never
  /// throws (there is nobody left to tell).
  void reap_transient(std::string_view name, bool remove) const noexcept;
  /// A defined VM; throws qvm::Error if there is none by that name.
  Vm get(std::string_view name) const;
  /// Every defined VM's status, sorted by name.
  std::vector<VmStatus> list() const;
  /// Undefines a VM. A running VM is refused unless `force` (then it is killed). With
  /// `disks`, the disk images qvm created for it are deleted too, but only those that are
  /// provably the files it created (or lie in the VM's folder) and that nothing else needs;
  /// returns the files deleted, and lists the others in `kept` with the reason.
  std::vector<std::filesystem::path> remove(std::string_view name, bool force, bool disks,
                                            std::vector<KeptDisk>* kept = nullptr) const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit Inventory(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qvm
