#include "supervisor/created_disks.hpp"

#include <nlohmann/json.hpp>

#include "command_line/run_paths.hpp"
#include "qvm/error.hpp"
#include "store/files.hpp"
#include "store/json_int.hpp"

namespace qvm::supervisor {
namespace fs = std::filesystem;

fs::path created_disks_file(const fs::path& vm_dir) {
  return RunPaths{vm_dir, {}}.created_disks();
}

std::vector<CreatedDisk> parse_created_disks(const std::string& text, const fs::path& file) {
  auto fail = [&](const std::string& what) -> Error {
    return Error(
        file.string() + ": " + what +
        "; qvm wrote it whole, so it was damaged or edited: restore it, or delete it (then "
        "`qvm rm --disks` deletes only what lies in the VM's folder)");
  };
  const auto list = nlohmann::json::parse(text, nullptr, false);
  if (list.is_discarded()) throw fail("not JSON");
  if (!list.is_array()) throw fail("not a JSON array");
  std::vector<CreatedDisk> disks;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const nlohmann::json& entry = list[i];
    const std::string where = "entry " + std::to_string(i);
    if (entry.is_string()) {
      // What qvm wrote before it recorded identities: a path only, which proves nothing.
      disks.push_back({entry.get<std::string>(), std::nullopt, ""});
      continue;
    }
    if (!entry.is_object() || !entry.contains("path") || !entry["path"].is_string()) {
      throw fail(where + " is not a path or an object with a \"path\"");
    }
    CreatedDisk disk{entry["path"].get<std::string>(), std::nullopt, ""};
    const auto device =
        entry.contains("device") ? store::json_int<std::uint64_t>(entry["device"]) : std::nullopt;
    const auto inode =
        entry.contains("inode") ? store::json_int<std::uint64_t>(entry["inode"]) : std::nullopt;
    if (!device || !inode)
      throw fail(where + " (" + disk.path.string() + ") has no integer \"device\" and \"inode\"");
    disk.identity = store::FileIdentity{*device, *inode};
    if (entry.contains("format")) {
      if (!entry["format"].is_string() ||
          (entry["format"] != "qcow2" && entry["format"] != "raw")) {
        throw fail(where + " (" + disk.path.string() +
                   ") has a \"format\" that is not \"qcow2\" or \"raw\"");
      }
      disk.format = entry["format"].get<std::string>();
    }
    disks.push_back(std::move(disk));
  }
  return disks;
}

std::vector<CreatedDisk> read_created_disks(const fs::path& vm_dir) {
  const fs::path file = created_disks_file(vm_dir);
  std::optional<std::string> text;
  try {
    text = store::read_file_if_exists(file);
  } catch (const Error& e) {
    throw Error(file.string() + ": " + e.what());
  }
  return text ? parse_created_disks(*text, file) : std::vector<CreatedDisk>{};
}

std::string created_disks_text(const std::vector<CreatedDisk>& disks) {
  nlohmann::json json = nlohmann::json::array();
  for (const CreatedDisk& disk : disks) {
    if (!disk.identity) {
      json.push_back(disk.path.string());
      continue;
    }
    nlohmann::json entry = {{"path", disk.path.string()},
                            {"device", disk.identity->device},
                            {"inode", disk.identity->inode}};
    if (!disk.format.empty()) entry["format"] = disk.format;
    json.push_back(std::move(entry));
  }
  return json.dump(2) + "\n";
}

}  // namespace qvm::supervisor
