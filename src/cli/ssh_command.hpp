#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "qvm/profile.hpp"

namespace qvm::cli {

/// What `qvm ssh` was asked for beyond the VM.
struct SshRequest {
  std::string vm;                                 // the VM's name
  std::filesystem::path state_dir;                // the VM's folder: known_hosts lives there
  std::optional<std::string> user;                // --user; else [cloud_init] user; else `local_user`
  std::optional<std::filesystem::path> identity;  // -i FILE
  std::vector<std::string> extra;                 // after --: ssh options and a remote command
  std::string local_user;                         // whoever runs qvm (as Lima does)
};

/// The ssh argv for reaching the guest through the user-mode forward to its port 22: a
/// per-VM known_hosts (first key accepted, a changed key refused), the key given, and the
/// user the profile's cloud-init created. Throws UsageError when nothing forwards to 22.
std::vector<std::string> ssh_argv(const Profile& profile, const SshRequest& request);

}  // namespace qvm::cli
