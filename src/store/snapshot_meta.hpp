#pragma once

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace qvm::store {

/// One disk of one snapshot: the image that was frozen when the snapshot was taken.
struct SnapshotDisk {
  std::size_t disk = 0;              // index in the profile's [[disk]] list
  std::filesystem::path image;       // never written again while the snapshot exists
  friend bool operator==(const SnapshotDisk&, const SnapshotDisk&) = default;
};

struct SnapshotRecord {
  std::string name;
  std::string description;
  std::string created_at;            // RFC 3339 UTC
  std::optional<std::string> parent; // the snapshot the VM was on when this one was taken
  std::string vm_state;              // "running", "paused" or "stopped" at that moment
  std::vector<SnapshotDisk> disks;
  friend bool operator==(const SnapshotRecord&, const SnapshotRecord&) = default;
};

/// An overlay image qvm created, and the image it sits on.
struct OverlayImage {
  std::filesystem::path backing;
  std::size_t disk = 0;
  friend bool operator==(const OverlayImage&, const OverlayImage&) = default;
};

/// snapshots.json in the VM's folder: the snapshot tree and which image each disk runs on.
/// Written atomically; an operation first records what it is about to do in `pending`,
/// so that a crash half-way can be finished or undone without losing a byte.
struct SnapshotMeta {
  int version = 1;
  std::optional<std::string> current;              // the snapshot the active images sit on
  std::map<std::size_t, std::filesystem::path> active;  // disk index -> active image (absent: the profile's path)
  std::map<std::string, OverlayImage> overlays;    // every image qvm created, by path
  std::vector<SnapshotRecord> snapshots;           // in creation order
  unsigned next_sequence = 1;                      // numbers new overlay files
  nlohmann::json pending;                          // null, or the operation in progress

  const SnapshotRecord* find(const std::string& name) const;
  nlohmann::json to_json() const;
  /// Throws qvm::Error naming the entry and the problem (not the file: the caller knows it).
  static SnapshotMeta from_json(const nlohmann::json& json);
};

/// Where the VM's snapshots.json is.
std::filesystem::path snapshot_meta_file(const std::filesystem::path& vm_dir);
/// The VM's snapshots.json, or an empty SnapshotMeta if it has none. Throws qvm::Error
/// naming the file's path, the entry and the fix when it is not a tree qvm could have
/// written (wrong types, duplicate names, a parent cycle or a missing parent, ...).
SnapshotMeta read_snapshot_meta(const std::filesystem::path& vm_dir);
/// Replaces snapshots.json atomically.
void write_snapshot_meta(const std::filesystem::path& vm_dir, const SnapshotMeta& meta);

}  // namespace qvm::store
