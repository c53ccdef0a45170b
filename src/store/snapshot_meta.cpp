#include "store/snapshot_meta.hpp"

#include "qvm/error.hpp"
#include "store/files.hpp"

namespace qvm::store {
namespace fs = std::filesystem;

const SnapshotRecord* SnapshotMeta::find(const std::string& name) const {
  for (const auto& record : snapshots) {
    if (record.name == name) return &record;
  }
  return nullptr;
}

nlohmann::json SnapshotMeta::to_json() const {
  nlohmann::json json = {{"version", version},
                         {"current", current ? nlohmann::json(*current) : nlohmann::json(nullptr)},
                         {"next_sequence", next_sequence},
                         {"pending", pending}};
  nlohmann::json active_json = nlohmann::json::object();
  for (const auto& [disk, path] : active) active_json[std::to_string(disk)] = path.string();
  json["active"] = active_json;
  nlohmann::json overlay_json = nlohmann::json::object();
  for (const auto& [path, overlay] : overlays) {
    overlay_json[path] = {{"backing", overlay.backing.string()}, {"disk", overlay.disk}};
  }
  json["overlays"] = overlay_json;
  nlohmann::json list = nlohmann::json::array();
  for (const auto& record : snapshots) {
    nlohmann::json disks = nlohmann::json::array();
    for (const auto& disk : record.disks) disks.push_back({{"disk", disk.disk}, {"image", disk.image.string()}});
    list.push_back({{"name", record.name},
                    {"description", record.description},
                    {"created_at", record.created_at},
                    {"parent", record.parent ? nlohmann::json(*record.parent) : nlohmann::json(nullptr)},
                    {"vm_state", record.vm_state},
                    {"disks", disks}});
  }
  json["snapshots"] = list;
  return json;
}

SnapshotMeta SnapshotMeta::from_json(const nlohmann::json& json) {
  try {
    SnapshotMeta meta;
    meta.version = json.at("version").get<int>();
    if (json.contains("current") && !json["current"].is_null()) meta.current = json["current"].get<std::string>();
    meta.next_sequence = json.value("next_sequence", 1u);
    meta.pending = json.value("pending", nlohmann::json());
    const nlohmann::json active = json.value("active", nlohmann::json::object());
    for (const auto& [disk, path] : active.items()) {
      meta.active[std::stoul(disk)] = path.get<std::string>();
    }
    const nlohmann::json overlays = json.value("overlays", nlohmann::json::object());
    for (const auto& [path, overlay] : overlays.items()) {
      meta.overlays[path] = OverlayImage{overlay.at("backing").get<std::string>(), overlay.at("disk").get<std::size_t>()};
    }
    const nlohmann::json snapshots = json.value("snapshots", nlohmann::json::array());
    for (const auto& item : snapshots) {
      SnapshotRecord record;
      record.name = item.at("name").get<std::string>();
      record.description = item.value("description", "");
      record.created_at = item.value("created_at", "");
      if (item.contains("parent") && !item["parent"].is_null()) record.parent = item["parent"].get<std::string>();
      record.vm_state = item.value("vm_state", "");
      for (const auto& disk : item.at("disks")) {
        record.disks.push_back({disk.at("disk").get<std::size_t>(), disk.at("image").get<std::string>()});
      }
      meta.snapshots.push_back(std::move(record));
    }
    return meta;
  } catch (const std::exception& e) {
    throw Error(std::string("snapshots.json is malformed: ") + e.what());
  }
}

SnapshotMeta read_snapshot_meta(const fs::path& vm_dir) {
  auto text = read_file_if_exists(vm_dir / "snapshots.json");
  if (!text) return {};
  auto json = nlohmann::json::parse(*text, nullptr, false);
  if (json.is_discarded()) throw Error("snapshots.json in " + vm_dir.string() + " is not JSON");
  return SnapshotMeta::from_json(json);
}

void write_snapshot_meta(const fs::path& vm_dir, const SnapshotMeta& meta) {
  write_file_atomically(vm_dir / "snapshots.json", meta.to_json().dump(2) + "\n");
}

}  // namespace qvm::store
