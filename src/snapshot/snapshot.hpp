#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "host/host_info.hpp"
#include "qvm/profile.hpp"
#include "store/owned_files.hpp"
#include "store/snapshot_meta.hpp"
#include "store/vm_store.hpp"

namespace qvm::snapshot {

/// A snapshot operation that cannot be done; what() says why and what to do instead.
class SnapshotError : public Error {
 public:
  using Error::Error;
};

/// What the snapshot code needs from outside: qemu-img, the clock, and (when the VM runs)
/// its QMP client socket.
struct Environment {
  host::ProgramRunner run;                                  // runs qemu-img
  std::function<std::chrono::system_clock::time_point()> now;
  std::optional<std::filesystem::path> qmp_socket;          // set: the VM is running
  std::function<void(const std::string&)> progress;         // long jobs report here
  std::optional<std::uint64_t> stream_speed;                // bytes/s limit for block-stream
};

/// The snapshot tree of one VM: snapshots.json plus the overlay images under
/// `<vm>/disks/`. Every writable disk takes part; raw writable disks are refused. The
/// caller holds the VM's operation lock. Every method first finishes or undoes an
/// operation a crash interrupted (see recover()).
class SnapshotTree {
 public:
  SnapshotTree(const store::VmStore& store, std::string vm, Profile profile, Environment env);

  /// Takes snapshot `name` of every writable disk at one instant: live with one QMP
  /// `transaction` of blockdev-snapshot-sync when the VM runs, with qemu-img otherwise.
  /// `vm_state` is recorded ("running", "paused", "stopped").
  store::SnapshotRecord create(const std::string& name, const std::string& description,
                               const std::string& vm_state);

  /// Points every disk at a fresh overlay over the snapshot's frozen images. The VM must
  /// be stopped (the caller stops and restarts it). Images no snapshot needs are deleted.
  void revert(const std::string& name);

  /// Merges snapshot `name` away without changing what any other snapshot or the running
  /// guest sees: its frozen image is streamed into every image that sits on it (live
  /// block-stream for images QEMU has open, qemu-img rebase for the others), then deleted.
  /// A snapshot whose frozen image is the profile's own disk just loses its record.
  void remove(const std::string& name);

  /// The recorded tree.
  store::SnapshotMeta meta() const;

  /// Finishes or undoes an operation a crash interrupted, going by what the files say.
  void recover();

  /// Throws SnapshotError unless `name` is a valid snapshot name.
  static void check_name(const std::string& name);

 private:
  std::filesystem::path vm_dir() const;
  std::filesystem::path frozen_or_active(const store::SnapshotMeta& meta, std::size_t disk) const;
  std::vector<std::size_t> snapshot_disks() const;
  void save(const store::SnapshotMeta& meta) const;
  std::optional<std::filesystem::path> backing_of(const std::filesystem::path& image) const;
  void finish_remove(store::SnapshotMeta& meta, const std::string& name);
  std::vector<store::NeededImage> profile_images() const;
  // Every image the profile, a snapshot (but `except_snapshot`), a disk or an overlay needs.
  std::vector<store::NeededImage> needed_images(const store::SnapshotMeta& meta,
                                                const std::string& except_snapshot = "") const;
  // Deletes an image qvm made in the VM's folder; throws SnapshotError naming it otherwise.
  void delete_image(const std::filesystem::path& image,
                    std::vector<store::NeededImage> needed) const;
  void check_meta(const store::SnapshotMeta& meta) const;

  const store::VmStore& store_;
  std::string vm_;
  Profile profile_;
  Environment env_;
};

/// The tree as `qvm snapshot ls` prints it: one line per snapshot, children indented under
/// their parent, the current one marked.
std::string render_tree(const store::SnapshotMeta& meta);

}  // namespace qvm::snapshot
