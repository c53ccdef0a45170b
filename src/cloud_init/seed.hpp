#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "qvm/profile.hpp"

namespace qvm::cloud_init {

/// The two files of a NoCloud seed.
struct SeedFiles {
  std::string meta_data;  // YAML: instance-id and local-hostname
  std::string user_data;  // "#cloud-config ..." or the profile's user_data file, verbatim
};

/// The volume label cloud-init's NoCloud source looks for.
inline constexpr std::string_view kSeedVolumeId = "cidata";

/// The host name a VM's seed gives: cloud_init.hostname, else the VM's name with every
/// character other than a letter, digit or "-" replaced by "-" (and no trailing "-").
std::string seed_hostname(const Profile& profile);

/// meta-data (instance-id = `uuid`, local-hostname) and user-data for `profile`, which must
/// have [cloud_init]. With cloud_init.user_data, `user_data_file` is that file's content and
/// becomes the user-data as is; otherwise qvm writes a #cloud-config with the hostname, the
/// user (passwordless sudo, locked password) and the SSH keys. Pure.
SeedFiles seed_files(const Profile& profile, std::string_view uuid,
                     const std::optional<std::string>& user_data_file = std::nullopt);

/// The seed as an ISO 9660 image labelled "cidata" holding meta-data and user-data. Pure.
std::string seed_image(const SeedFiles& files);

/// Writes the seed image of `profile` (which must have [cloud_init]) to `path`, replacing
/// it atomically (mode 0600), after reading cloud_init.user_data if set. Throws qvm::Error
/// naming the file when the user-data file cannot be read or the image cannot be written.
void write_seed(const Profile& profile, std::string_view uuid, const std::filesystem::path& path);

}  // namespace qvm::cloud_init
