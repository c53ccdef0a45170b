#include <signal.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "command_line/command_line.hpp"
#include "command_line/qemu_img.hpp"
#include "host/host_info.hpp"
#include "qvm/agent.hpp"
#include "qvm/qmp.hpp"
#include "qvm/vm.hpp"
#include "store/layout.hpp"
#include "store/log_rotation.hpp"
#include "store/vm_store.hpp"
#include "supervisor/control.hpp"
#include "supervisor/disks.hpp"
#include "process/run_program.hpp"
#include "snapshot/snapshot.hpp"
#include "store/snapshot_meta.hpp"
#include "supervisor/launch.hpp"

namespace qvm {
namespace fs = std::filesystem;

struct Inventory::Impl {
  store::VmStore store;
};

namespace {

// Extra time beyond the profile's ACPI timeout for quit, SIGTERM and SIGKILL.
constexpr std::chrono::seconds kLadderTail{45};

}  // namespace

Inventory::Inventory(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Inventory::~Inventory() = default;

std::shared_ptr<Inventory> Inventory::open(std::optional<fs::path> state_dir) {
  const store::Environment env = store::current_environment();
  auto impl = std::make_unique<Impl>(Impl{store::VmStore(store::state_root(state_dir, env), store::runtime_root(env))});
  return std::shared_ptr<Inventory>(new Inventory(std::move(impl)));
}

const fs::path& Inventory::state_root() const { return impl_->store.root(); }

DryRun Inventory::dry_run(const Profile& profile) const {
  const store::VmStore& store = impl_->store;
  const host::HostNeeds needs{profile.accel != Accel::tcg, profile.firmware == Firmware::uefi};
  host::HostInfo host = host::probe_host(profile.qemu.binary, needs,
                                         [](const auto& argv) { return process::run_program(argv); },
                                         host::real_kvm_system(), store.qemu_probe_cache());
  // A defined VM keeps the UUID it was given; a new one would get the derived one.
  std::string uuid = profile.uuid.value_or("");
  if (uuid.empty()) {
    auto status = store.read_status(profile.name);
    uuid = status && !status->uuid.empty() ? status->uuid
                                           : store::derive_uuid(store::host_id(), store.root(), profile.name);
  }
  CommandLine command = build_command_line(profile, host, store.paths(profile.name), uuid);
  DryRun result;
  result.shell = shell_join(command.argv);
  result.argv = std::move(command.argv);
  result.warnings = std::move(command.warnings);
  return result;
}

bool Inventory::defined(std::string_view name) const { return impl_->store.defined(name); }

Vm Inventory::define_transient(Profile profile, bool remove_when_stopped) const {
  const store::VmStore& store = impl_->store;
  // A CI job must not crawl under emulation by accident: "auto" means KVM here.
  if (profile.accel == Accel::automatic) {
    host::KvmStatus kvm = host::probe_kvm(host::real_kvm_system());
    if (!kvm.usable) {
      throw HostError("KVM is not usable: " + kvm.problem + "; " + kvm.hint +
                      ". To run under TCG emulation anyway (much slower), pass --accel tcg");
    }
    // Stated, so that a QEMU dying on KVM fails the run instead of falling back to TCG.
    profile.accel = Accel::kvm;
  }
  const RunPaths files = store.paths(profile.name);
  store::make_private_dir(files.run_disks());
  for (std::size_t i = 0; i < profile.disks.size(); ++i) {
    Disk& disk = profile.disks[i];
    if (disk.readonly) continue;
    const fs::path overlay = files.run_overlay(i);
    std::vector<std::string> argv;
    std::error_code ec;
    if (fs::exists(disk.path, ec)) {
      argv = qemu_img_create_argv(overlay, "qcow2",
                                  BackingImage{disk.path, std::string(to_string(disk.format))},
                                  std::nullopt);
    } else if (disk.backing) {
      argv = qemu_img_create_argv(overlay, "qcow2", BackingImage{*disk.backing, "qcow2"},
                                  disk.size_bytes);
    } else {
      argv = qemu_img_create_argv(overlay, "qcow2", std::nullopt, disk.size_bytes.value_or(0));
    }
    auto out = process::run_program(argv);
    if (out.exit_code != 0) throw Error("cannot create a throwaway overlay for " + disk.path.string() + ": " + out.out);
    disk.path = overlay;
    disk.format = DiskFormat::qcow2;
    disk.backing.reset();
    disk.size_bytes.reset();
  }
  Vm vm = define(profile);
  // If even the reaper is killed (a whole cgroup at once), `qvm ls` removes what is left.
  if (remove_when_stopped) store::write_file_atomically(files.transient_marker(), "rm\n");
  return vm;
}

void Inventory::reap_transient(std::string_view name_view, bool remove) const noexcept {
  try {
    const store::VmStore& store = impl_->store;
    const std::string name(name_view);
    if (auto status = store.read_status(name)) {
      if (status->pid && supervisor::is_vm_qemu(*status->pid, status->qemu)) ::kill(*status->pid, SIGKILL);
    }
    if (remove && store.defined(name)) {
      // QEMU must be gone before its files are.
      for (int i = 0; i < 100; ++i) {
        auto status = store.read_status(name);
        if (!status || !status->pid || !supervisor::is_vm_qemu(*status->pid, status->qemu)) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      store.remove(name);
    }
  } catch (const std::exception&) {
    // Best effort: nobody is left to tell.
  }
}

int Inventory::supervise_detached(std::string_view name, int notify_fd,
                                  std::optional<std::chrono::seconds> ready_timeout,
                                  std::optional<int> attach_pid) const {
  return supervisor::run_detached_supervisor(impl_->store, std::string(name), notify_fd, ready_timeout,
                                             attach_pid);
}

Vm Inventory::define(const Profile& profile) const {
  store::VmStore::check_name(profile.name);
  store::FileLock lock = impl_->store.lock_operations(profile.name, "qvm define");
  if (impl_->store.defined(profile.name)) {
    VmStatus status = supervisor::reconcile_status(impl_->store, profile.name);
    if (is_active(status.state)) {
      Profile stored = impl_->store.load_profile(profile.name);
      Profile wanted = profile;
      wanted.uuid = stored.uuid;
      wanted.source = stored.source;
      if (!(stored == wanted)) {
        throw VmStateError("VM \"" + profile.name + "\" is " + std::string(to_string(status.state)) +
                           " with a different profile; stop it first (qvm down " + profile.name + ")");
      }
      return Vm(shared_from_this(), profile.name);
    }
  }
  if (impl_->store.defined(profile.name)) {
    // Overlays and snapshots are tied to the disks they were made from.
    const auto meta = store::read_snapshot_meta(impl_->store.paths(profile.name).state_dir);
    if (!meta.active.empty() || !meta.snapshots.empty()) {
      const Profile stored = impl_->store.load_profile(profile.name);
      bool same = stored.disks.size() == profile.disks.size();
      for (std::size_t i = 0; same && i < profile.disks.size(); ++i) {
        same = stored.disks[i].path == profile.disks[i].path &&
               stored.disks[i].format == profile.disks[i].format &&
               stored.disks[i].readonly == profile.disks[i].readonly;
      }
      if (!same) {
        throw VmStateError("VM \"" + profile.name + "\" runs on snapshot overlays of its current disks, so "
                           "its [[disk]] list cannot change; `qvm rm " + profile.name +
                           "` first, or keep the disks as they are");
      }
    }
  }
  impl_->store.define(profile);
  return Vm(shared_from_this(), profile.name);
}

Vm Inventory::up(const Profile& profile, const StartOptions& options) const {
  if (impl_->store.defined(profile.name)) {
    VmStatus status = supervisor::reconcile_status(impl_->store, profile.name);
    if (is_active(status.state)) {
      throw VmStateError("VM \"" + profile.name + "\" is already " + std::string(to_string(status.state)) +
                         (status.pid ? " (QEMU pid " + std::to_string(*status.pid) + ")" : std::string()));
    }
  }
  Vm vm = define(profile);
  vm.start(options);
  return vm;
}

Vm Inventory::get(std::string_view name) const {
  store::VmStore::check_name(name);
  if (!impl_->store.defined(name)) {
    throw Error("no VM named \"" + std::string(name) + "\" (see qvm ls)");
  }
  return Vm(shared_from_this(), std::string(name));
}

std::vector<VmStatus> Inventory::list() const {
  std::vector<VmStatus> result;
  for (const auto& name : impl_->store.names()) {
    VmStatus status = supervisor::reconcile_status(impl_->store, name);
    // A `qvm run --rm` VM whose qvm, reaper and QEMU were all killed: finish its removal.
    std::error_code ec;
    if (!is_active(status.state) && fs::exists(impl_->store.paths(name).transient_marker(), ec) &&
        !impl_->store.supervisor_alive(name)) {
      if (auto lock = impl_->store.try_lock_operations(name, "qvm ls cleanup")) {
        impl_->store.remove(name);  // under the lock, as rm does
        continue;
      }
    }
    result.push_back(status);
  }
  return result;
}

std::vector<fs::path> Inventory::remove(std::string_view name, bool force, bool disks,
                                        std::vector<KeptDisk>* kept) const {
  Vm vm = get(name);
  // The lock first, then the state: an `up`, `start` or snapshot operation in progress
  // finishes (or fails) before rm decides, and nothing can start the VM until its folder
  // is gone. The supervisor never takes this lock, so a kill through it cannot deadlock.
  store::FileLock lock = impl_->store.lock_operations(name, "qvm rm", store::VmStore::LockMode::existing);
  VmStatus status = vm.status();
  if (is_active(status.state)) {
    if (!force) {
      throw VmStateError("VM \"" + std::string(name) + "\" is " + std::string(to_string(status.state)) +
                         "; stop it first (qvm down " + std::string(name) + ") or use --force");
    }
    status = vm.kill();
  }
  // A supervisor that has just stopped QEMU (after `down`, `kill`) holds its lock a moment
  // longer; one that stays is about to restart QEMU ([shutdown] restart), into a folder
  // that must still exist.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  auto qemu_runs = [&] {
    return status.pid && supervisor::is_vm_qemu(*status.pid, status.qemu);
  };
  while ((impl_->store.supervisor_alive(name) || qemu_runs()) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (impl_->store.supervisor_alive(name) || qemu_runs()) {
    throw VmStateError("VM \"" + std::string(name) + "\" still has its supervisor" +
                       (qemu_runs() ? " and QEMU (pid " + std::to_string(*status.pid) + ")" : std::string()) +
                       " after 10 s (is a restart pending?); try again");
  }
  std::vector<fs::path> deleted;
  if (disks) deleted = supervisor::remove_created_disks(impl_->store, std::string(name), kept);
  // Still under the lock: whoever waits for it finds no VM rather than a folder going away.
  impl_->store.remove(name);
  return deleted;
}

VmStatus Vm::status() const { return supervisor::reconcile_status(inventory_->impl().store, name_); }

Profile Vm::profile() const { return inventory_->impl().store.load_profile(name_); }

VmStatus Vm::start(const StartOptions& options) const {
  auto& store = const_cast<store::VmStore&>(inventory_->impl().store);
  return supervisor::start_vm(store, name_, options);
}

namespace {

[[noreturn]] void not_running(const std::string& name, const VmStatus& status) {
  throw VmStateError("VM \"" + name + "\" is " + std::string(to_string(status.state)) +
                     (status.reason.empty() ? "" : " (" + status.reason + ")"));
}

}  // namespace

DownResult Vm::down(std::optional<std::chrono::seconds> timeout, bool force,
                    const std::function<void(const std::string&)>& progress) const {
  const auto& store = inventory_->impl().store;
  VmStatus status = this->status();
  if (!is_active(status.state)) return {"already stopped", std::chrono::milliseconds(0), status, ""};
  if (!store.supervisor_alive(name_)) {
    throw Error("VM \"" + name_ + "\" has no supervisor (QEMU pid " +
                std::to_string(status.pid.value_or(0)) + " is unsupervised)");
  }
  std::chrono::seconds acpi = Shutdown{}.timeout;
  std::string warning;
  if (timeout) {
    acpi = *timeout;
  } else {
    // A broken stored profile must not keep a running VM from stopping.
    try {
      acpi = profile().shutdown.timeout;
    } catch (const Error& e) {
      warning = std::string(e.what()) + "; shutting down with the default ACPI timeout of " +
                std::to_string(acpi.count()) + " s";
    }
  }
  nlohmann::json request = {{"op", "down"}, {"timeout", acpi.count()}, {"force", force}};
  auto reply = supervisor::control_request(store.paths(name_).control_socket(), request,
                                           acpi + kLadderTail, progress);
  if (!reply.value("ok", false)) throw Error(reply.value("error", "down failed"));
  return {reply.value("step", ""), std::chrono::milliseconds(reply.value("elapsed_ms", 0)), this->status(),
          warning};
}

VmStatus Vm::kill() const {
  const auto& store = inventory_->impl().store;
  VmStatus status = this->status();
  if (!is_active(status.state)) return status;
  if (!store.supervisor_alive(name_)) {
    // Nobody else can do it: kill the unsupervised QEMU directly, if it really is ours.
    if (status.pid && supervisor::is_vm_qemu(*status.pid, status.qemu)) ::kill(*status.pid, SIGKILL);
    return this->status();
  }
  auto reply = supervisor::control_request(store.paths(name_).control_socket(),
                                           {{"op", "kill"}}, std::chrono::seconds(30));
  if (!reply.value("ok", false)) throw Error(reply.value("error", "kill failed"));
  return this->status();
}

nlohmann::json Vm::qmp(const std::string& command, const nlohmann::json& arguments) const {
  VmStatus status = this->status();
  if (!is_active(status.state)) not_running(name_, status);
  QmpSession session(qmp_socket(), std::chrono::seconds(10));
  return session.execute(command, arguments, std::chrono::seconds(60));
}

namespace {

// QEMU answers stop/cont before the supervisor has seen the event; wait for it, so that a
// `status` right after `pause` says paused.
void await_state(const Vm& vm, VmState wanted) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (vm.status().state != wanted && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace

void Vm::pause() const {
  qmp("stop");
  await_state(*this, VmState::paused);
}

void Vm::resume() const {
  qmp("cont");
  await_state(*this, VmState::running);
}
void Vm::reset() const { qmp("system_reset"); }

std::string Vm::reboot() const {
  VmStatus status = this->status();
  if (!is_active(status.state)) not_running(name_, status);
  if (profile().agent) {
    // A reboot from inside lets the guest stop its services and flush its disks.
    try {
      AgentClient agent(inventory_->impl().store.paths(name_).agent_socket(), std::chrono::seconds(3));
      agent.shutdown(AgentShutdownMode::reboot, std::chrono::seconds(3));
      return "agent";
    } catch (const AgentError&) {
      throw;
    } catch (const Error&) {
      // No agent answering (not installed, not started yet): fall back to a reset.
    }
  }
  qmp("system_reset");
  return "reset";
}

int Vm::exec(const std::vector<std::string>& argv, const std::function<void(std::string_view)>& on_stdout,
             const std::function<void(std::string_view)>& on_stderr, std::chrono::milliseconds timeout) const {
  VmStatus status = this->status();
  if (status.state != VmState::running) not_running(name_, status);
  if (!profile().agent) {
    throw VmStateError("VM \"" + name_ + "\" has no guest agent channel; set agent = true in its profile "
                       "and install qemu-guest-agent in the guest");
  }
  AgentClient agent(inventory_->impl().store.paths(name_).agent_socket(), std::chrono::seconds(10));
  return agent.exec_streaming(argv, on_stdout, on_stderr, timeout);
}

std::vector<nlohmann::json> Vm::journal() const {
  std::vector<nlohmann::json> entries;
  // events.jsonl.1 first: the journal goes on across a rotation.
  std::istringstream in(store::read_log_with_rotated(inventory_->impl().store.paths(name_).events()));
  for (std::string line; std::getline(in, line);) {
    // A line cut short by a full disk, or edited by hand, is skipped rather than fatal.
    auto entry = nlohmann::json::parse(line, nullptr, false);
    if (entry.is_object() && entry.contains("event") && entry["event"].is_string()) {
      entries.push_back(std::move(entry));
    }
  }
  return entries;
}

std::optional<nlohmann::json> Vm::wait_for_event(std::string_view event, std::size_t after,
                                                 std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // A rotation drops the oldest entries and shifts every index: what counts as "after" is
  // what follows the last entry the caller had seen, found again by its content.
  std::optional<std::string> last_seen;
  for (;;) {
    auto entries = journal();
    if (!last_seen && after > 0 && after <= entries.size()) last_seen = entries[after - 1].dump();
    std::size_t first = after;
    if (last_seen) {
      first = 0;
      for (std::size_t i = entries.size(); i > 0; --i) {
        if (entries[i - 1].dump() == *last_seen) {
          first = i;
          break;
        }
      }
    }
    for (std::size_t i = first; i < entries.size(); ++i) {
      if (entries[i].value("event", "") == event) return entries[i];
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

nlohmann::json SnapshotInfo::to_json() const {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& image : images) list.push_back(image.string());
  return {{"name", name},
          {"description", description},
          {"created_at", created_at},
          {"parent", parent ? nlohmann::json(*parent) : nlohmann::json(nullptr)},
          {"vm_state", vm_state},
          {"current", current},
          {"images", list}};
}

namespace {

SnapshotInfo to_info(const store::SnapshotRecord& record, const store::SnapshotMeta& meta) {
  SnapshotInfo info{record.name, record.description, record.created_at, record.parent,
                    record.vm_state, meta.current == record.name, {}};
  for (const auto& disk : record.disks) info.images.push_back(disk.image);
  return info;
}

snapshot::Environment snapshot_environment(const store::VmStore& store, const std::string& name,
                                           const VmStatus& status) {
  snapshot::Environment env;
  env.run = [](const auto& argv) { return process::run_program(argv, std::chrono::minutes(30)); };
  env.now = [] { return std::chrono::system_clock::now(); };
  if (status.state == VmState::running || status.state == VmState::paused) {
    env.qmp_socket = store.paths(name).client_qmp();
  }
  // A test knob: slow block-stream down enough to interrupt it.
  if (const char* speed = std::getenv("QVM_STREAM_SPEED"); speed && *speed) {
    env.stream_speed = std::stoull(speed);
  }
  return env;
}

void refuse_transitions(const std::string& name, const VmStatus& status) {
  if (status.state == VmState::starting || status.state == VmState::stopping) {
    throw VmStateError("VM \"" + name + "\" is " + std::string(to_string(status.state)) +
                       "; try again once it is running or stopped");
  }
}

}  // namespace

std::vector<SnapshotInfo> Vm::snapshots() const {
  const auto& store = inventory_->impl().store;
  const auto meta = store::read_snapshot_meta(store.paths(name_).state_dir);
  std::vector<SnapshotInfo> list;
  for (const auto& record : meta.snapshots) list.push_back(to_info(record, meta));
  return list;
}

std::string Vm::snapshot_tree() const {
  return snapshot::render_tree(store::read_snapshot_meta(inventory_->impl().store.paths(name_).state_dir));
}

void check_snapshot_name(const std::string& name) { snapshot::SnapshotTree::check_name(name); }

SnapshotInfo Vm::snapshot_create(const std::string& name, const std::string& description) const {
  snapshot::SnapshotTree::check_name(name);
  const auto& store = inventory_->impl().store;
  store::FileLock lock = store.lock_operations(name_, "qvm snapshot create", store::VmStore::LockMode::existing);
  VmStatus status = this->status();
  refuse_transitions(name_, status);
  const Profile vm_profile = profile();
  if (vm_profile.qemu.user && (status.state == VmState::running || status.state == VmState::paused)) {
    throw snapshot::SnapshotError(
        "VM \"" + name_ + "\" runs QEMU as \"" + *vm_profile.qemu.user +
        "\" ([qemu] user), which cannot create the new overlay images in the VM's private "
        "folder; stop it (qvm down " + name_ + ") and snapshot it offline");
  }
  snapshot::SnapshotTree tree(store, name_, vm_profile, snapshot_environment(store, name_, status));
  const std::string state = status.state == VmState::paused    ? "paused"
                            : status.state == VmState::running ? "running"
                                                               : "stopped";
  auto record = tree.create(name, description, state);
  return to_info(record, tree.meta());
}

void Vm::snapshot_revert(const std::string& name, const StartOptions& restart) const {
  const auto& store = inventory_->impl().store;
  VmStatus status = this->status();
  refuse_transitions(name_, status);
  if (!store::read_snapshot_meta(store.paths(name_).state_dir).find(name)) {
    throw snapshot::SnapshotError("VM \"" + name_ + "\" has no snapshot named \"" + name +
                                  "\" (see qvm snapshot ls " + name_ + ")");
  }
  const bool was_running = status.state == VmState::running || status.state == VmState::paused;
  // The running state is thrown away with the disks' state, so there is nothing to save.
  if (was_running) down(std::chrono::seconds(0), true);
  {
    store::FileLock lock = store.lock_operations(name_, "qvm snapshot revert", store::VmStore::LockMode::existing);
    snapshot::SnapshotTree tree(store, name_, profile(), snapshot_environment(store, name_, this->status()));
    tree.revert(name);
  }
  if (was_running) start(restart);
}

void Vm::snapshot_remove(const std::string& name, const std::function<void(const std::string&)>& progress) const {
  const auto& store = inventory_->impl().store;
  store::FileLock lock = store.lock_operations(name_, "qvm snapshot rm", store::VmStore::LockMode::existing);
  VmStatus status = this->status();
  refuse_transitions(name_, status);
  auto env = snapshot_environment(store, name_, status);
  env.progress = progress;
  snapshot::SnapshotTree tree(store, name_, profile(), env);
  tree.remove(name);
}

fs::path Vm::serial_log() const { return inventory_->impl().store.paths(name_).serial_log(); }
fs::path Vm::journal_file() const { return inventory_->impl().store.paths(name_).events(); }
fs::path Vm::qemu_log() const { return inventory_->impl().store.paths(name_).qemu_log(); }
fs::path Vm::console_socket() const { return inventory_->impl().store.paths(name_).console_socket(); }
fs::path Vm::qmp_socket() const { return inventory_->impl().store.paths(name_).client_qmp(); }

}  // namespace qvm
