#pragma once

#include <filesystem>
#include <string_view>

#include "qvm/profile.hpp"

namespace qvm {

/// Reads the resolved copy of VM `vm`'s profile that qvm stored at `path`. Besides being a
/// valid profile it must be what qvm writes: a `name` equal to `vm` and the `[qemu]` table
/// written last (so an emptied or cut-short file is refused, never a VM with defaults).
/// Throws ProfileError naming `path`, the problem and how to re-define the VM.
Profile load_stored_profile(const std::filesystem::path& path, std::string_view vm);

}  // namespace qvm
