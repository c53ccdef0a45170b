#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "store/owned_files.hpp"

namespace qvm::supervisor {

/// A disk image qvm created, and which file it was when it was made.
struct CreatedDisk {
  std::filesystem::path path;
  std::optional<store::FileIdentity> identity;  // nullopt: recorded by an older qvm, unverifiable
  std::string format;                           // "qcow2", "raw"; "" when unknown
  friend bool operator==(const CreatedDisk&, const CreatedDisk&) = default;
};

/// Where the VM's record of the images qvm created for it is.
std::filesystem::path created_disks_file(const std::filesystem::path& vm_dir);

/// The images recorded in created-disks.json (none if it does not exist). Each entry is
/// {"path", "device", "inode", "format"}; a plain path string (what older qvm wrote) is an
/// entry without identity. Throws qvm::Error naming the file's path and the entry.
std::vector<CreatedDisk> read_created_disks(const std::filesystem::path& vm_dir);
/// The same, from the text of `file`.
std::vector<CreatedDisk> parse_created_disks(const std::string& text,
                                             const std::filesystem::path& file);
/// created-disks.json's text for `disks` (entries without identity as plain paths).
std::string created_disks_text(const std::vector<CreatedDisk>& disks);

}  // namespace qvm::supervisor
