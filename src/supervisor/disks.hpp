#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "host/host_info.hpp"
#include "qvm/profile.hpp"
#include "qvm/vm.hpp"
#include "store/vm_store.hpp"
#include "supervisor/created_disks.hpp"

namespace qvm::supervisor {

/// Creates every disk image of `profile` that does not exist yet: `size` gives a new empty
/// image, `backing` an overlay with an absolute backing path and an explicit backing
/// format. Returns the images created, each with its device and inode. Throws qvm::Error
/// with qemu-img's message; images created before the failure are removed again, so
/// nothing is half-done.
std::vector<CreatedDisk> create_missing_disks(const Profile& profile,
                                              const host::ProgramRunner& run);

/// The format qemu-img detects for an existing image ("qcow2", "raw", ...).
std::string detect_image_format(const std::filesystem::path& image, const host::ProgramRunner& run);

/// Adds `created` to the VM's created-disks.json (atomically). An unreadable old record is
/// replaced, which only ever makes `rm --disks` keep more.
void record_created_disks(const store::VmStore& store, const std::string& name,
                          const std::vector<CreatedDisk>& created);

/// Deletes the images recorded in the VM's created-disks.json, but only those that are
/// still exactly the file qvm created (same device and inode, a regular file, qcow2 magic
/// for qcow2) or lie inside the VM's folder, and that are not an image the VM's profile
/// (backing images), another VM of this state root (disks, backings, snapshots) still
/// needs. Returns the images deleted; every other one is kept and, with `kept`, listed
/// there with the reason. Never throws for what the files say: the caller can always go on
/// and undefine the VM. The caller holds the operation lock.
std::vector<std::filesystem::path> remove_created_disks(const store::VmStore& store,
                                                        const std::string& name,
                                                        std::vector<KeptDisk>* kept);

}  // namespace qvm::supervisor
