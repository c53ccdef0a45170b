#pragma once

#include <filesystem>
#include <vector>

#include "host/host_info.hpp"
#include "qvm/profile.hpp"

namespace qvm::supervisor {

/// Creates every disk image of `profile` that does not exist yet: `size` gives a new empty
/// image, `backing` an overlay with an absolute backing path and an explicit backing
/// format. Returns the images created. Throws qvm::Error with qemu-img's message; images
/// created before the failure are removed again, so nothing is half-done.
std::vector<std::filesystem::path> create_missing_disks(const Profile& profile,
                                                        const host::ProgramRunner& run);

/// The format qemu-img detects for an existing image ("qcow2", "raw", ...).
std::string detect_image_format(const std::filesystem::path& image, const host::ProgramRunner& run);

}  // namespace qvm::supervisor
