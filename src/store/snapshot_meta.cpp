#include "store/snapshot_meta.hpp"

#include "qvm/error.hpp"
#include "store/files.hpp"
#include "store/json_int.hpp"

namespace qvm::store {
namespace fs = std::filesystem;
namespace {

template <typename Int>
Int read_int(const nlohmann::json& value, const char* what) {
  const std::optional<Int> result = json_int<Int>(value);
  if (!result) throw Error(std::string("\"") + what + "\" is not an integer in range");
  return *result;
}

}  // namespace

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

namespace {

// `pending` records a snapshot operation that a crash may have interrupted; the next start
// finishes or undoes it from these fields alone, so they are checked here, once.
void check_pending(const nlohmann::json& pending) {
  if (pending.is_null()) return;
  const std::string fix =
      " (it records an interrupted snapshot operation; delete the \"pending\" entry to drop it)";
  if (!pending.is_object()) throw Error("\"pending\" is not an object" + fix);
  const auto op = pending.find("op");
  if (op == pending.end() || !op->is_string() ||
      (*op != "create" && *op != "revert" && *op != "remove")) {
    throw Error("\"pending\".op is not \"create\", \"revert\" or \"remove\"" + fix);
  }
  const auto name = pending.find("name");
  if (name == pending.end() || !name->is_string()) throw Error("\"pending\".name is not a string" + fix);
  if (pending.contains("live") && !pending["live"].is_boolean()) {
    throw Error("\"pending\".live is not true or false" + fix);
  }
  if (!pending.contains("disks")) return;
  const nlohmann::json& disks = pending["disks"];
  if (!disks.is_object()) throw Error("\"pending\".disks is not an object" + fix);
  for (const auto& [disk, entry] : disks.items()) {
    const bool index = !disk.empty() && disk.size() <= 9 &&
                       disk.find_first_not_of("0123456789") == std::string::npos;
    if (!index || !entry.is_object() || !entry.contains("overlay") || !entry["overlay"].is_string() ||
        !entry.contains("frozen") || !entry["frozen"].is_string()) {
      throw Error("\"pending\".disks[\"" + disk + "\"] is not a disk index with an overlay and a frozen image" + fix);
    }
  }
}

}  // namespace

SnapshotMeta SnapshotMeta::from_json(const nlohmann::json& json) {
  try {
    SnapshotMeta meta;
    meta.version = read_int<int>(json.at("version"), "version");
    if (json.contains("current") && !json["current"].is_null()) meta.current = json["current"].get<std::string>();
    if (json.contains("next_sequence"))
      meta.next_sequence = read_int<unsigned>(json["next_sequence"], "next_sequence");
    meta.pending = json.value("pending", nlohmann::json());
    check_pending(meta.pending);
    const nlohmann::json active = json.value("active", nlohmann::json::object());
    for (const auto& [disk, path] : active.items()) {
      meta.active[std::stoul(disk)] = path.get<std::string>();
    }
    const nlohmann::json overlays = json.value("overlays", nlohmann::json::object());
    for (const auto& [path, overlay] : overlays.items()) {
      meta.overlays[path] = OverlayImage{overlay.at("backing").get<std::string>(),
                                         read_int<std::size_t>(overlay.at("disk"), "disk")};
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
        record.disks.push_back(
            {read_int<std::size_t>(disk.at("disk"), "disk"), disk.at("image").get<std::string>()});
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
  // qvm writes a few levels; nlohmann copies and dumps recursively, so a corrupt file nested
  // some ten thousand levels deep would overflow the stack instead of being refused.
  constexpr int kMaxNesting = 64;
  bool too_deep = false;
  const auto depth_check = [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    too_deep = too_deep || depth > kMaxNesting;
    return true;
  };
  auto json = nlohmann::json::parse(*text, depth_check, false);
  if (json.is_discarded()) throw Error("snapshots.json in " + vm_dir.string() + " is not JSON");
  if (too_deep) throw Error("snapshots.json in " + vm_dir.string() + " is nested too deeply");
  return SnapshotMeta::from_json(json);
}

void write_snapshot_meta(const fs::path& vm_dir, const SnapshotMeta& meta) {
  write_file_atomically(vm_dir / "snapshots.json", meta.to_json().dump(2) + "\n");
}

}  // namespace qvm::store
