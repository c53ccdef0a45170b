#include "store/snapshot_meta.hpp"


#include "command_line/run_paths.hpp"
#include "qvm/error.hpp"
#include "qvm/profile.hpp"
#include "store/files.hpp"
#include "store/json_int.hpp"

namespace qvm::store {
namespace fs = std::filesystem;
namespace {

template <typename Int>
Int read_int(const nlohmann::json& value, const std::string& what) {
  const std::optional<Int> result = json_int<Int>(value);
  if (!result) throw Error(what + " is not an integer in range");
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

namespace {

// Where a value sits in the file, as the error names it: "snapshots"[2].name.
std::string at_key(const std::string& where, const std::string& key) {
  return where.empty() ? "\"" + key + "\"" : where + "." + key;
}

const std::string& string_at(const nlohmann::json& object, const std::string& key,
                             const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end() || !it->is_string()) throw Error(at_key(where, key) + " is not a string");
  return it->get_ref<const std::string&>();
}

std::string optional_string_at(const nlohmann::json& object, const std::string& key,
                               const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return "";
  if (!it->is_string()) throw Error(at_key(where, key) + " is not a string");
  return it->get<std::string>();
}

std::optional<std::string> name_or_null_at(const nlohmann::json& object, const std::string& key,
                                           const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) throw Error(at_key(where, key) + " is not a snapshot name or null");
  return it->get<std::string>();
}

const nlohmann::json& object_at(const nlohmann::json& json, const char* key) {
  static const nlohmann::json empty = nlohmann::json::object();
  const auto it = json.find(key);
  if (it == json.end() || it->is_null()) return empty;
  if (!it->is_object()) throw Error(std::string("\"") + key + "\" is not an object");
  return *it;
}

std::size_t disk_index(const std::string& text, const std::string& where) {
  if (text.empty() || text.size() > 9 ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    throw Error(where + " is not a disk index");
  }
  return static_cast<std::size_t>(std::stoul(text));
}

std::string json_quoted(const std::string& text) {
  return nlohmann::json(text).dump();
}

// The tree must be one: names unique, every parent a snapshot, no parent cycle, `current`
// a snapshot. Anything else is a file qvm did not write, and walking it (snapshot ls,
// revert, rm) would loop or pick the wrong images.
void check_tree(const SnapshotMeta& meta) {
  std::map<std::string, std::optional<std::string>> parents;
  for (const SnapshotRecord& record : meta.snapshots) {
    if (!parents.emplace(record.name, record.parent).second) {
      throw Error("two snapshots are named " + json_quoted(record.name));
    }
  }
  for (const SnapshotRecord& record : meta.snapshots) {
    if (record.parent && !parents.count(*record.parent)) {
      throw Error("snapshot " + json_quoted(record.name) + " has parent " +
                  json_quoted(*record.parent) + ", which is not a snapshot");
    }
  }
  for (const SnapshotRecord& record : meta.snapshots) {
    std::optional<std::string> up = record.parent;
    for (std::size_t steps = 0; up; ++steps) {
      if (*up == record.name || steps > parents.size()) {
        throw Error("snapshot " + json_quoted(record.name) +
                    " is its own ancestor (a parent cycle)");
      }
      up = parents.at(*up);
    }
  }
  if (meta.current && !parents.count(*meta.current)) {
    throw Error("\"current\" names " + json_quoted(*meta.current) + ", which is not a snapshot");
  }
  if (meta.pending.is_object()) {
    const std::string op = meta.pending.value("op", "");
    const std::string name = meta.pending.value("name", "");
    const std::string fix =
        " (it records an interrupted snapshot operation; delete the \"pending\" entry to drop it)";
    if (op == "create" && parents.count(name)) {
      throw Error("\"pending\" creates snapshot " + json_quoted(name) + ", which already exists" +
                  fix);
    }
    if (op == "revert" && !parents.count(name)) {
      throw Error("\"pending\" reverts to " + json_quoted(name) + ", which is not a snapshot" +
                  fix);
    }
  }
}

SnapshotMeta parse_meta(const nlohmann::json& json);

}  // namespace

SnapshotMeta SnapshotMeta::from_json(const nlohmann::json& json) {
  try {
    return parse_meta(json);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    // Every check above is meant to come first; this only keeps a missed one qvm's own error.
    throw Error(std::string("unreadable (") + e.what() + ")");
  }
}

namespace {

SnapshotMeta parse_meta(const nlohmann::json& json) {
  if (!json.is_object()) throw Error("the file is not a JSON object");
  SnapshotMeta meta;
  if (!json.contains("version")) throw Error("\"version\" is missing");
  meta.version = read_int<int>(json["version"], "\"version\"");
  meta.current = name_or_null_at(json, "current", "");
  if (json.contains("next_sequence"))
    meta.next_sequence = read_int<unsigned>(json["next_sequence"], "\"next_sequence\"");
  meta.pending = json.value("pending", nlohmann::json());
  check_pending(meta.pending);
  for (const auto& [disk, path] : object_at(json, "active").items()) {
    const std::string where = "\"active\"[\"" + disk + "\"]";
    if (!path.is_string()) throw Error(where + " is not a path");
    meta.active[disk_index(disk, where)] = path.get<std::string>();
  }
  for (const auto& [path, overlay] : object_at(json, "overlays").items()) {
    const std::string where = "\"overlays\"[" + json_quoted(path) + "]";
    if (!overlay.is_object() || !overlay.contains("disk"))
      throw Error(where + " is not an object with a backing and a disk");
    meta.overlays[path] = OverlayImage{string_at(overlay, "backing", where),
                                       read_int<std::size_t>(overlay["disk"], where + ".disk")};
  }
  if (json.contains("snapshots") && !json["snapshots"].is_null()) {
    const nlohmann::json& snapshots = json["snapshots"];
    if (!snapshots.is_array()) throw Error("\"snapshots\" is not an array");
    for (std::size_t i = 0; i < snapshots.size(); ++i) {
      const nlohmann::json& item = snapshots[i];
      const std::string where = "\"snapshots\"[" + std::to_string(i) + "]";
      if (!item.is_object()) throw Error(where + " is not an object");
      SnapshotRecord record;
      record.name = string_at(item, "name", where);
      if (!is_valid_name(record.name))
        throw Error(where + ".name " + json_quoted(record.name) + " is not a snapshot name");
      record.description = optional_string_at(item, "description", where);
      record.created_at = optional_string_at(item, "created_at", where);
      record.parent = name_or_null_at(item, "parent", where);
      record.vm_state = optional_string_at(item, "vm_state", where);
      const auto disks = item.find("disks");
      if (disks == item.end() || !disks->is_array()) throw Error(where + ".disks is not an array");
      for (std::size_t d = 0; d < disks->size(); ++d) {
        const nlohmann::json& disk = (*disks)[d];
        const std::string disk_where = where + ".disks[" + std::to_string(d) + "]";
        if (!disk.is_object() || !disk.contains("disk"))
          throw Error(disk_where + " is not an object with a disk and an image");
        record.disks.push_back({read_int<std::size_t>(disk["disk"], disk_where + ".disk"),
                                string_at(disk, "image", disk_where)});
      }
      meta.snapshots.push_back(std::move(record));
    }
  }
  check_tree(meta);
  return meta;
}

}  // namespace

fs::path snapshot_meta_file(const fs::path& vm_dir) {
  return RunPaths{vm_dir, {}}.snapshots();
}

SnapshotMeta read_snapshot_meta(const fs::path& vm_dir) {
  const fs::path file = snapshot_meta_file(vm_dir);
  const std::string fix =
      "; qvm wrote it whole, so it was damaged or edited: restore it, or correct that entry";
  std::optional<std::string> text;
  try {
    text = read_file_if_exists(file);
  } catch (const Error& e) {
    throw Error(file.string() + ": " + e.what());
  }
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
  if (json.is_discarded()) throw Error(file.string() + ": not JSON" + fix);
  if (too_deep) throw Error(file.string() + ": nested too deeply" + fix);
  try {
    return SnapshotMeta::from_json(json);
  } catch (const Error& e) {
    const std::string what = e.what();
    // The pending checks carry their own fix.
    throw Error(file.string() + ": " + what +
                (what.find("\"pending\" entry") == std::string::npos ? fix : ""));
  }
}

void write_snapshot_meta(const fs::path& vm_dir, const SnapshotMeta& meta) {
  write_file_atomically(snapshot_meta_file(vm_dir), meta.to_json().dump(2) + "\n");
}

}  // namespace qvm::store
