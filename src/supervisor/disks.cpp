#include "supervisor/disks.hpp"

#include <nlohmann/json.hpp>

#include "command_line/qemu_img.hpp"
#include "qvm/error.hpp"
#include "store/files.hpp"
#include "store/snapshot_meta.hpp"

namespace qvm::supervisor {
namespace fs = std::filesystem;

std::string detect_image_format(const fs::path& image, const host::ProgramRunner& run) {
  auto out = run({"qemu-img", "info", "--output=json", "-U", image.string()});
  auto info = nlohmann::json::parse(out.out, nullptr, false);
  if (out.exit_code != 0 || !info.is_object() || !info.contains("format") ||
      !info["format"].is_string()) {
    throw Error("cannot inspect " + image.string() + ": " + out.out.substr(0, 300));
  }
  return info["format"].get<std::string>();
}

std::vector<CreatedDisk> create_missing_disks(const Profile& profile,
                                              const host::ProgramRunner& run) {
  std::vector<CreatedDisk> created;
  try {
    for (const Disk& disk : profile.disks) {
      std::error_code ec;
      if (fs::exists(disk.path, ec)) continue;
      if (!disk.size_bytes && !disk.backing) {
        throw Error("disk " + disk.path.string() +
                    " does not exist and the profile gives no size to create it");
      }
      fs::create_directories(disk.path.parent_path(), ec);
      const std::string format(to_string(disk.format));
      std::optional<BackingImage> backing;
      if (disk.backing) {
        backing = BackingImage{fs::absolute(*disk.backing), detect_image_format(*disk.backing, run)};
      }
      auto out = run(qemu_img_create_argv(disk.path, format, backing, disk.size_bytes));
      if (out.exit_code != 0) {
        throw Error("cannot create disk " + disk.path.string() + ": " + out.out);
      }
      // Which file this is, so that `rm --disks` deletes this file and no other one that
      // later takes its name.
      created.push_back({disk.path, store::identity_of(disk.path), format});
    }
  } catch (...) {
    for (const auto& disk : created) {
      store::remove_owned_file(disk.path, {disk.path.parent_path(), {}, disk.identity, false});
    }
    throw;
  }
  return created;
}

void record_created_disks(const store::VmStore& store, const std::string& name,
                          const std::vector<CreatedDisk>& created) {
  if (created.empty()) return;
  const fs::path vm_dir = store.paths(name).state_dir;
  std::vector<CreatedDisk> list;
  try {
    list = read_created_disks(vm_dir);
  } catch (const Error&) {
    // Forgetting what an unreadable record said can only make rm --disks keep more.
  }
  for (const CreatedDisk& disk : created) {
    // A disk created again at the same path is a new file: the new identity is the one.
    std::erase_if(list, [&](const CreatedDisk& old) { return old.path == disk.path; });
    list.push_back(disk);
  }
  store::write_file_atomically(created_disks_file(vm_dir), created_disks_text(list));
}

namespace {

// What the VM's own profile and every other VM of the state root still run on.
std::vector<store::NeededImage> images_still_needed(const store::VmStore& store,
                                                    const std::string& name) {
  std::vector<store::NeededImage> needed;
  try {
    const Profile profile = store.load_profile(name);
    for (std::size_t i = 0; i < profile.disks.size(); ++i) {
      if (profile.disks[i].backing) {
        needed.push_back(
            {*profile.disks[i].backing,
             "the backing image of disk " + std::to_string(i) + " of VM \"" + name + "\""});
      }
    }
  } catch (const Error&) {
    // A broken profile names nothing; the recorded identities still protect every other file.
  }
  for (const std::string& other : store.names()) {
    if (other == name) continue;
    const std::string vm = "VM \"" + other + "\"";
    try {
      const Profile profile = store.load_profile(other);
      for (std::size_t i = 0; i < profile.disks.size(); ++i) {
        needed.push_back({profile.disks[i].path, "disk " + std::to_string(i) + " of " + vm});
        if (profile.disks[i].backing) {
          needed.push_back({*profile.disks[i].backing,
                            "the backing image of disk " + std::to_string(i) + " of " + vm});
        }
      }
    } catch (const Error&) {
    }
    try {
      const auto meta = store::read_snapshot_meta(store.paths(other).state_dir);
      for (const auto& record : meta.snapshots) {
        for (const auto& disk : record.disks)
          needed.push_back({disk.image, "frozen by snapshot \"" + record.name + "\" of " + vm});
      }
      for (const auto& [path, overlay] : meta.overlays)
        needed.push_back({overlay.backing, "a backing image of " + vm});
    } catch (const Error&) {
    }
  }
  return needed;
}

}  // namespace

std::vector<fs::path> remove_created_disks(const store::VmStore& store, const std::string& name,
                                           std::vector<KeptDisk>* kept) {
  std::vector<fs::path> deleted;
  auto keep = [&](fs::path path, std::string reason) {
    if (kept) kept->push_back({std::move(path), std::move(reason)});
  };
  const fs::path vm_dir = store.paths(name).state_dir;
  std::vector<CreatedDisk> disks;
  try {
    disks = read_created_disks(vm_dir);
  } catch (const Error& e) {
    keep({}, std::string(e.what()) + "; no disk was deleted");
    return deleted;
  }
  if (disks.empty()) return deleted;
  const std::vector<store::NeededImage> needed = images_still_needed(store, name);
  for (const CreatedDisk& disk : disks) {
    const store::DeletionRule rule{vm_dir, needed, disk.identity, disk.format == "qcow2"};
    const store::DeletionOutcome outcome = store::remove_owned_file(disk.path, rule);
    if (outcome.kind == store::DeletionOutcome::Kind::deleted) deleted.push_back(disk.path);
    if (outcome.kind != store::DeletionOutcome::Kind::kept) continue;
    keep(disk.path,
         "it " + outcome.reason +
             (disk.identity || !outcome.reason.starts_with("lies outside")
                  ? std::string()
                  : " and created-disks.json has it from an older qvm, without its device "
                    "and inode, so qvm cannot tell it is the file it created"));
  }
  return deleted;
}

}  // namespace qvm::supervisor
