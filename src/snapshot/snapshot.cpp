#include "snapshot/snapshot.hpp"

#include <algorithm>
#include <set>

#include "command_line/command_line.hpp"
#include "command_line/qemu_img.hpp"
#include "command_line/run_paths.hpp"
#include "qvm/qmp.hpp"
#include "store/files.hpp"
#include "store/owned_files.hpp"

namespace qvm::snapshot {
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using store::SnapshotMeta;
using store::SnapshotRecord;

namespace {

// The block device of disk `index` in query-block's answer, as the node QEMU writes to now.
struct ActiveNode {
  std::string node;
  fs::path file;
};

std::optional<ActiveNode> active_node(const nlohmann::json& blocks, std::size_t index) {
  // virtio-blk reports a QOM path ("/machine/peripheral/disk0/virtio-backend"), the other
  // devices their bare id ("disk1").
  const std::string id = disk_device_id(index);
  const std::string qom = "/machine/peripheral/" + id;
  for (const auto& block : blocks) {
    const std::string path = block.value("qdev", "");
    if (path != id && path != qom && path.rfind(qom + "/", 0) != 0) continue;
    if (!block.contains("inserted")) return std::nullopt;
    const auto& inserted = block["inserted"];
    return ActiveNode{inserted.value("node-name", ""), inserted.value("file", "")};
  }
  return std::nullopt;
}

// Format-layer node names of every image QEMU has open, by file name.
std::map<fs::path, std::string> open_images(QmpSession& qmp) {
  std::map<fs::path, std::string> nodes;
  for (const auto& node : qmp.execute("query-named-block-nodes", {{"flat", true}})) {
    if (node.value("drv", "") == "file" || !node.contains("file")) continue;
    nodes.emplace(node["file"].get<std::string>(), node.value("node-name", ""));
  }
  return nodes;
}

}  // namespace

SnapshotTree::SnapshotTree(const store::VmStore& store, std::string vm, Profile profile, Environment env)
    : store_(store), vm_(std::move(vm)), profile_(std::move(profile)), env_(std::move(env)) {}

void SnapshotTree::check_name(const std::string& name) {
  if (!is_valid_name(name)) {
    throw SnapshotError("\"" + name + "\" is not a snapshot name: use 1-63 letters, digits, '.', '_' "
                        "or '-', starting with a letter or digit");
  }
}

fs::path SnapshotTree::vm_dir() const { return store_.paths(vm_).state_dir; }

store::SnapshotMeta SnapshotTree::meta() const { return store::read_snapshot_meta(vm_dir()); }

void SnapshotTree::save(const SnapshotMeta& meta) const { store::write_snapshot_meta(vm_dir(), meta); }

std::vector<store::NeededImage> SnapshotTree::profile_images() const {
  std::vector<store::NeededImage> needed;
  for (std::size_t i = 0; i < profile_.disks.size(); ++i) {
    const Disk& disk = profile_.disks[i];
    needed.push_back(
        {disk.path, "the image of disk " + std::to_string(i) + " in the VM's profile"});
    if (disk.backing)
      needed.push_back({*disk.backing,
                        "the backing image of disk " + std::to_string(i) + " in the VM's profile"});
  }
  return needed;
}

std::vector<store::NeededImage> SnapshotTree::needed_images(
    const SnapshotMeta& meta, const std::string& except_snapshot) const {
  std::vector<store::NeededImage> needed = profile_images();
  for (const auto& record : meta.snapshots) {
    if (record.name == except_snapshot) continue;
    for (const auto& disk : record.disks)
      needed.push_back({disk.image, "frozen by snapshot \"" + record.name + "\""});
  }
  for (const auto& [disk, image] : meta.active) {
    needed.push_back({image, "the image disk " + std::to_string(disk) + " runs on"});
  }
  for (const auto& [path, overlay] : meta.overlays) {
    needed.push_back({overlay.backing, "the backing image of " + path});
  }
  return needed;
}

void SnapshotTree::delete_image(const fs::path& image,
                                std::vector<store::NeededImage> needed) const {
  const store::DeletionOutcome outcome =
      store::remove_owned_file(image, {vm_dir(), std::move(needed), std::nullopt, true});
  if (outcome.kind != store::DeletionOutcome::Kind::kept) return;
  throw SnapshotError(
      store::snapshot_meta_file(vm_dir()).string() + " names " + image.string() +
      " as an image to delete, but it " + outcome.reason +
      "; qvm deletes only the images it "
      "made in the VM's folder, so it was kept. Correct or restore snapshots.json (delete its "
      "\"pending\" entry to drop an interrupted operation)");
}

// A file qvm did not write can name any path and any disk; refuse it before recovery or an
// operation acts on it, so that nothing is half-done when it is refused.
void SnapshotTree::check_meta(const SnapshotMeta& meta) const {
  const std::string file = store::snapshot_meta_file(vm_dir()).string();
  auto check_disk = [&](std::size_t disk, const std::string& where) {
    if (disk >= profile_.disks.size()) {
      throw SnapshotError(file + ": " + where + " names disk " + std::to_string(disk) +
                          ", but the VM's profile has " + std::to_string(profile_.disks.size()) +
                          " disks; correct or restore snapshots.json");
    }
  };
  std::vector<std::pair<fs::path, std::size_t>> deletable;  // every image an operation may delete
  for (const auto& [path, overlay] : meta.overlays) {
    check_disk(overlay.disk, "overlay " + path);
    deletable.emplace_back(path, overlay.disk);
  }
  for (const auto& [disk, image] : meta.active) check_disk(disk, "\"active\"");
  for (const auto& record : meta.snapshots) {
    for (const auto& disk : record.disks) check_disk(disk.disk, "snapshot \"" + record.name + "\"");
  }
  if (meta.pending.is_object() && meta.pending.contains("disks")) {
    for (const auto& [disk, entry] : meta.pending["disks"].items()) {
      check_disk(std::stoul(disk), "\"pending\"");
      deletable.emplace_back(entry["overlay"].get<std::string>(), std::stoul(disk));
    }
  }
  const std::vector<store::NeededImage> needed = profile_images();
  for (const auto& [image, disk] : deletable) {
    if (auto why = store::deletion_refused(image, {vm_dir(), needed, std::nullopt, true})) {
      throw SnapshotError(
          file + " names " + image.string() + " as an overlay qvm made for disk " +
          std::to_string(disk) + ", but it " + *why +
          "; qvm deletes only the images it made in "
          "the VM's folder, so it touched nothing. Correct or restore snapshots.json (delete its "
          "\"pending\" entry to drop an interrupted operation)");
    }
  }
}

fs::path SnapshotTree::frozen_or_active(const SnapshotMeta& meta, std::size_t disk) const {
  auto it = meta.active.find(disk);
  return it != meta.active.end() ? it->second : profile_.disks[disk].path;
}

std::vector<std::size_t> SnapshotTree::snapshot_disks() const {
  std::vector<std::size_t> disks;
  for (std::size_t i = 0; i < profile_.disks.size(); ++i) {
    const Disk& disk = profile_.disks[i];
    if (disk.readonly) continue;  // nothing can change in it, so nothing to capture
    if (disk.format == DiskFormat::raw) {
      throw SnapshotError("disk[" + std::to_string(i) + "] (" + disk.path.string() +
                          ") is a raw image, and snapshots need qcow2 disks; convert it with "
                          "`qemu-img convert -O qcow2 " + disk.path.string() + " NEW.qcow2` and "
                          "point the profile at the copy, or mark it readonly");
    }
    disks.push_back(i);
  }
  if (disks.empty()) throw SnapshotError("VM \"" + vm_ + "\" has no writable disk to snapshot");
  return disks;
}

std::optional<fs::path> SnapshotTree::backing_of(const fs::path& image) const {
  auto out = env_.run({"qemu-img", "info", "-U", "--output=json", image.string()});
  auto info = nlohmann::json::parse(out.out, nullptr, false);
  if (out.exit_code != 0 || !info.is_object()) {
    throw SnapshotError("cannot read " + image.string() + ": " + out.out.substr(0, 300));
  }
  for (const char* key : {"full-backing-filename", "backing-filename"}) {
    if (info.contains(key) && info[key].is_string()) return fs::path(info[key].get<std::string>());
  }
  return std::nullopt;
}

SnapshotRecord SnapshotTree::create(const std::string& name, const std::string& description,
                                    const std::string& vm_state) {
  check_name(name);
  recover();
  SnapshotMeta meta = this->meta();
  if (meta.find(name)) {
    throw SnapshotError("VM \"" + vm_ + "\" already has a snapshot named \"" + name + "\"");
  }
  const std::vector<std::size_t> disks = snapshot_disks();
  const unsigned sequence = meta.next_sequence++;
  store::make_private_dir(RunPaths{vm_dir(), {}}.snapshot_disks());

  // What each disk runs on now is what gets frozen; with a live VM, QEMU has the last word.
  std::optional<QmpSession> qmp;
  nlohmann::json blocks;
  if (env_.qmp_socket) {
    qmp.emplace(*env_.qmp_socket, 10s);
    blocks = qmp->execute("query-block");
  }
  std::map<std::size_t, fs::path> frozen, overlays;
  std::map<std::size_t, std::string> nodes;
  for (std::size_t i : disks) {
    frozen[i] = frozen_or_active(meta, i);
    overlays[i] = RunPaths{vm_dir(), {}}.snapshot_overlay(disk_device_id(i), sequence);
    if (qmp) {
      auto active = active_node(blocks, i);
      if (!active || active->node.empty()) {
        throw SnapshotError("QEMU does not show disk " + disk_device_id(i) + " of VM \"" + vm_ + "\"");
      }
      nodes[i] = active->node;
      frozen[i] = active->file;
    }
  }
  nlohmann::json plan = nlohmann::json::object();
  for (std::size_t i : disks) plan[std::to_string(i)] = {{"overlay", overlays[i].string()}, {"frozen", frozen[i].string()}};
  meta.pending = {{"op", "create"}, {"name", name}, {"live", qmp.has_value()}, {"disks", plan}};
  save(meta);

  auto undo = [&](const std::string& why) {
    SnapshotMeta clean = this->meta();
    for (const auto& [i, overlay] : overlays) delete_image(overlay, needed_images(clean));
    clean.pending = nullptr;
    save(clean);
    throw SnapshotError("snapshot \"" + name + "\" failed: " + why);
  };
  if (qmp) {
    nlohmann::json actions = nlohmann::json::array();
    for (std::size_t i : disks) {
      actions.push_back({{"type", "blockdev-snapshot-sync"},
                         {"data",
                          {{"node-name", nodes[i]},
                           {"snapshot-file", overlays[i].string()},
                           {"snapshot-node-name", disk_device_id(i) + "-s" + std::to_string(sequence)},
                           {"format", "qcow2"},
                           {"mode", "absolute-paths"}}}});
    }
    try {
      // One transaction: every disk is captured at the same instant, or none is.
      qmp->execute("transaction", {{"actions", actions}}, 120s);
    } catch (const QmpError& e) {
      undo(std::string("QEMU refused it: ") + e.desc());
    }
  } else {
    for (std::size_t i : disks) {
      const bool overlay = meta.overlays.count(frozen[i]) != 0;
      const std::string format = overlay ? "qcow2" : std::string(to_string(profile_.disks[i].format));
      auto out = env_.run(
          qemu_img_create_argv(overlays[i], "qcow2", BackingImage{frozen[i], format}, std::nullopt));
      if (out.exit_code != 0) undo("qemu-img: " + out.out);
    }
  }

  SnapshotRecord record;
  record.name = name;
  record.description = description;
  record.created_at = store::format_time(env_.now());
  record.parent = meta.current;
  record.vm_state = vm_state;
  for (std::size_t i : disks) {
    record.disks.push_back({i, frozen[i]});
    meta.overlays[overlays[i].string()] = store::OverlayImage{frozen[i], i};
    meta.active[i] = overlays[i];
  }
  meta.snapshots.push_back(record);
  meta.current = name;
  meta.pending = nullptr;
  save(meta);
  return record;
}

void SnapshotTree::revert(const std::string& name) {
  recover();
  SnapshotMeta meta = this->meta();
  const SnapshotRecord* record = meta.find(name);
  if (!record) throw SnapshotError("VM \"" + vm_ + "\" has no snapshot named \"" + name + "\" (see qvm snapshot ls " + vm_ + ")");
  const unsigned sequence = meta.next_sequence++;
  std::map<std::size_t, fs::path> overlays;
  nlohmann::json plan = nlohmann::json::object();
  for (const auto& disk : record->disks) {
    overlays[disk.disk] = RunPaths{vm_dir(), {}}.snapshot_overlay(disk_device_id(disk.disk), sequence);
    plan[std::to_string(disk.disk)] = {{"overlay", overlays[disk.disk].string()}, {"frozen", disk.image.string()}};
  }
  meta.pending = {{"op", "revert"}, {"name", name}, {"disks", plan}};
  save(meta);
  store::make_private_dir(RunPaths{vm_dir(), {}}.snapshot_disks());
  for (const auto& disk : record->disks) {
    const bool overlay = meta.overlays.count(disk.image) != 0;
    const std::string format = overlay ? "qcow2" : std::string(to_string(profile_.disks[disk.disk].format));
    auto out = env_.run(qemu_img_create_argv(overlays[disk.disk], "qcow2",
                                             BackingImage{disk.image, format}, std::nullopt));
    if (out.exit_code != 0) {
      for (const auto& [i, file] : overlays) delete_image(file, needed_images(meta));
      meta.pending = nullptr;
      save(meta);
      throw SnapshotError("revert to \"" + name + "\" failed: qemu-img: " + out.out);
    }
  }
  // The writes made since `name` live only in the old active overlays: drop them.
  std::set<fs::path> frozen;
  for (const auto& snapshot : meta.snapshots) {
    for (const auto& disk : snapshot.disks) frozen.insert(disk.image);
  }
  const auto record_disks = record->disks;
  for (const auto& disk : record_disks) {
    meta.active[disk.disk] = overlays[disk.disk];
    meta.overlays[overlays[disk.disk].string()] = store::OverlayImage{disk.image, disk.disk};
  }
  meta.current = name;
  meta.pending = nullptr;
  // Garbage: overlays nothing runs on, no snapshot froze, and no other image sits on.
  for (bool removed = true; removed;) {
    removed = false;
    for (auto it = meta.overlays.begin(); it != meta.overlays.end(); ++it) {
      const fs::path path = it->first;
      bool needed = frozen.count(path) != 0;
      for (const auto& [disk, active] : meta.active) needed = needed || active == path;
      for (const auto& [other, overlay] : meta.overlays) needed = needed || overlay.backing == path;
      if (needed) continue;
      meta.overlays.erase(it);
      delete_image(path, needed_images(meta));
      removed = true;
      break;
    }
  }
  save(meta);
}

void SnapshotTree::remove(const std::string& name) {
  const SnapshotMeta before = this->meta();
  const bool interrupted = before.pending.is_object() && before.pending.value("op", "") == "remove" &&
                           before.pending.value("name", "") == name;
  recover();
  // A delete of this very snapshot that a crash interrupted has just been finished.
  if (interrupted) return;
  SnapshotMeta meta = this->meta();
  if (!meta.find(name)) {
    throw SnapshotError("VM \"" + vm_ + "\" has no snapshot named \"" + name + "\" (see qvm snapshot ls " + vm_ + ")");
  }
  meta.pending = {{"op", "remove"}, {"name", name}};
  save(meta);
  finish_remove(meta, name);
}

void SnapshotTree::finish_remove(SnapshotMeta& meta, const std::string& name) {
  const SnapshotRecord* found = meta.find(name);
  if (!found) {
    meta.pending = nullptr;
    save(meta);
    return;
  }
  const SnapshotRecord record = *found;
  std::optional<QmpSession> qmp;
  std::map<fs::path, std::string> open;
  if (env_.qmp_socket) {
    qmp.emplace(*env_.qmp_socket, 10s);
    open = open_images(*qmp);
  }
  // Another snapshot may have frozen the same image (nothing was written in between);
  // then it must stay.
  auto frozen_elsewhere = [&](const fs::path& image) {
    for (const auto& other : meta.snapshots) {
      if (other.name == name) continue;
      for (const auto& disk : other.disks) {
        if (disk.image == image) return true;
      }
    }
    return false;
  };
  int job = 0;
  for (const auto& disk : record.disks) {
    const fs::path frozen = disk.image;
    auto overlay = meta.overlays.find(frozen.string());
    // The profile's own disk is the root of the chain: it stays, only the record goes.
    if (overlay == meta.overlays.end() || frozen_elsewhere(frozen)) continue;
    const fs::path base = overlay->second.backing;
    const bool base_is_overlay = meta.overlays.count(base.string()) != 0;
    const std::string base_format = base_is_overlay ? "qcow2" : std::string(to_string(profile_.disks[disk.disk].format));
    std::vector<fs::path> children;
    for (const auto& [path, image] : meta.overlays) {
      if (image.backing == frozen) children.push_back(path);
    }
    for (const fs::path& child : children) {
      // A crash may have come after QEMU or qemu-img finished: the file knows.
      if (backing_of(child) != frozen) {
        meta.overlays[child.string()].backing = base;
        save(meta);
        continue;
      }
      if (auto node = open.find(child); node != open.end()) {
        auto base_node = open.find(base);
        if (base_node == open.end()) {
          throw SnapshotError("QEMU has " + child.string() + " open but not " + base.string() +
                              "; cannot stream safely");
        }
        const std::string job_id = "qvm-stream-" + std::to_string(++job);
        nlohmann::json args = {{"job-id", job_id}, {"device", node->second}, {"base-node", base_node->second}};
        if (env_.stream_speed) args["speed"] = *env_.stream_speed;
        if (env_.progress) env_.progress("merging " + frozen.filename().string() + " into " + child.filename().string());
        qmp->execute("block-stream", args);
        for (;;) {
          auto done = qmp->wait_event("BLOCK_JOB_COMPLETED", 1s);
          if (done && done->data.value("device", "") == job_id) {
            if (done->data.contains("error")) {
              throw SnapshotError("merging " + frozen.string() + " failed: " + done->data["error"].get<std::string>());
            }
            break;
          }
          if (!done && env_.progress) {
            for (const auto& running : qmp->execute("query-block-jobs")) {
              if (running.value("device", "") != job_id || running.value("len", 0) == 0) continue;
              env_.progress("merging: " + std::to_string(running.value("offset", 0LL) * 100 / running.value("len", 1LL)) + "%");
            }
          }
        }
      } else {
        if (env_.progress) env_.progress("rebasing " + child.filename().string());
        auto out = env_.run({"qemu-img", "rebase", "-q", "-f", "qcow2", "-b", base.string(), "-F", base_format,
                             child.string()});
        if (out.exit_code != 0) throw SnapshotError("merging " + frozen.string() + " failed: qemu-img: " + out.out);
      }
      meta.overlays[child.string()].backing = base;
      save(meta);
    }
    meta.overlays.erase(frozen.string());
    delete_image(frozen, needed_images(meta, name));
    save(meta);
  }
  for (auto& snapshot : meta.snapshots) {
    if (snapshot.parent == name) snapshot.parent = record.parent;
  }
  if (meta.current == name) meta.current = record.parent;
  meta.snapshots.erase(std::remove_if(meta.snapshots.begin(), meta.snapshots.end(),
                                      [&](const SnapshotRecord& r) { return r.name == name; }),
                       meta.snapshots.end());
  meta.pending = nullptr;
  save(meta);
}

void SnapshotTree::recover() {
  SnapshotMeta meta = this->meta();
  check_meta(meta);
  if (!meta.pending.is_object()) return;
  const std::string op = meta.pending.value("op", "");
  const std::string name = meta.pending.value("name", "");
  if (op == "remove") return finish_remove(meta, name);

  std::map<std::size_t, std::pair<fs::path, fs::path>> plan;  // disk -> overlay, frozen
  const nlohmann::json planned = meta.pending.value("disks", nlohmann::json::object());
  for (const auto& [disk, entry] : planned.items()) {
    plan[std::stoul(disk)] = {entry.at("overlay").get<std::string>(), entry.at("frozen").get<std::string>()};
  }
  bool all_there = true;
  for (const auto& [disk, files] : plan) {
    std::error_code ec;
    all_there = all_there && fs::exists(files.first, ec) && backing_of(files.first) == files.second;
  }
  bool committed = all_there;
  if (op == "create" && meta.pending.value("live", false) && all_there) {
    // QEMU switches every disk or none; only it can say which happened.
    committed = false;
    if (env_.qmp_socket) {
      QmpSession qmp(*env_.qmp_socket, 10s);
      auto blocks = qmp.execute("query-block");
      committed = true;
      for (const auto& [disk, files] : plan) {
        auto active = active_node(blocks, disk);
        committed = committed && active && active->file == files.first;
      }
    }
    if (!committed && !env_.qmp_socket) {
      // QEMU is gone, so nobody knows whether it wrote to the new overlays. Running on them
      // loses nothing either way (an unused overlay reads through to its backing image),
      // but the snapshot itself cannot be vouched for, so it is not recorded.
      for (const auto& [disk, files] : plan) {
        meta.overlays[files.first.string()] = store::OverlayImage{files.second, disk};
        meta.active[disk] = files.first;
      }
      meta.pending = nullptr;
      save(meta);
      return;
    }
  }
  if (!committed) {
    for (const auto& [disk, files] : plan) delete_image(files.first, needed_images(meta));
    meta.pending = nullptr;
    save(meta);
    return;
  }
  if (op == "create") {
    SnapshotRecord record;
    record.name = name;
    record.created_at = store::format_time(env_.now());
    record.parent = meta.current;
    record.vm_state = meta.pending.value("live", false) ? "running" : "stopped";
    for (const auto& [disk, files] : plan) {
      record.disks.push_back({disk, files.second});
      meta.overlays[files.first.string()] = store::OverlayImage{files.second, disk};
      meta.active[disk] = files.first;
    }
    meta.snapshots.push_back(record);
    meta.current = name;
  } else if (op == "revert") {
    for (const auto& [disk, files] : plan) {
      meta.overlays[files.first.string()] = store::OverlayImage{files.second, disk};
      meta.active[disk] = files.first;
    }
    meta.current = name;
  }
  meta.pending = nullptr;
  save(meta);
}

std::string render_tree(const SnapshotMeta& meta) {
  if (meta.snapshots.empty()) return "no snapshots\n";
  std::string out;
  std::function<void(const std::optional<std::string>&, const std::string&)> walk =
      [&](const std::optional<std::string>& parent, const std::string& indent) {
        std::vector<const SnapshotRecord*> children;
        for (const auto& record : meta.snapshots) {
          if (record.parent == parent) children.push_back(&record);
        }
        for (std::size_t i = 0; i < children.size(); ++i) {
          const bool last = i + 1 == children.size();
          const SnapshotRecord& r = *children[i];
          const std::string branch = parent ? (last ? "`-- " : "|-- ") : "";
          out += indent + branch + r.name + (meta.current == r.name ? " *" : "") + "  " + r.created_at + "  " +
                 r.vm_state + (r.description.empty() ? "" : "  " + r.description) + "\n";
          walk(r.name, indent + (parent ? (last ? "    " : "|   ") : ""));
        }
      };
  walk(std::nullopt, "");
  out += meta.current ? "* the VM runs on top of \"" + *meta.current + "\"\n"
                      : "the VM runs on its original disks (no snapshot below it)\n";
  return out;
}

}  // namespace qvm::snapshot
