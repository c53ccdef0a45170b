#include "cloud_init/seed.hpp"

#include <nlohmann/json.hpp>

#include "cloud_init/iso9660.hpp"
#include "store/files.hpp"

namespace qvm::cloud_init {
namespace {

// A YAML double-quoted scalar. JSON's string syntax is a subset of it, escapes included,
// so nothing a user writes (quotes, colons, "#", newlines) can change the document's shape.
std::string yaml_quote(std::string_view text) {
  return nlohmann::json(std::string(text)).dump();
}

bool is_alnum(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

}  // namespace

std::string seed_hostname(const Profile& profile) {
  if (profile.cloud_init && profile.cloud_init->hostname) return *profile.cloud_init->hostname;
  // VM names may hold "." and "_", which would make a bad or multi-label host name.
  std::string hostname = profile.name;
  for (char& c : hostname) {
    if (!is_alnum(c)) c = '-';
  }
  while (!hostname.empty() && hostname.back() == '-') hostname.pop_back();
  return hostname.empty() ? "localhost" : hostname;
}

SeedFiles seed_files(const Profile& profile, std::string_view uuid,
                     const std::optional<std::string>& user_data_file) {
  const CloudInit cloud_init = profile.cloud_init.value_or(CloudInit{});
  const std::string hostname = seed_hostname(profile);
  SeedFiles files;
  files.meta_data = "instance-id: " + yaml_quote(uuid) + "\nlocal-hostname: " +
                    yaml_quote(hostname) + "\n";
  if (cloud_init.user_data) {
    files.user_data = user_data_file.value_or("");
    return files;
  }
  std::string& out = files.user_data;
  out = "#cloud-config\n";
  out += "hostname: " + yaml_quote(hostname) + "\n";
  const auto key_list = [&](std::string_view indent) {
    for (const std::string& key : cloud_init.ssh_authorized_keys) {
      out += std::string(indent) + "  - " + yaml_quote(key) + "\n";
    }
  };
  if (cloud_init.user) {
    // Like the default user of cloud images: sudo without a password, no password login.
    out += "users:\n";
    out += "  - name: " + yaml_quote(*cloud_init.user) + "\n";
    out += "    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n";
    out += "    shell: /bin/bash\n";
    out += "    lock_passwd: true\n";
    if (!cloud_init.ssh_authorized_keys.empty()) {
      out += "    ssh_authorized_keys:\n";
      key_list("    ");
    }
  } else if (!cloud_init.ssh_authorized_keys.empty()) {
    // Without a user of its own, the keys go to the image's default user.
    out += "ssh_authorized_keys:\n";
    key_list("");
  }
  return files;
}

std::string seed_image(const SeedFiles& files) {
  return make_iso9660(kSeedVolumeId,
                      {IsoFile{"meta-data", files.meta_data}, IsoFile{"user-data", files.user_data}});
}

void write_seed(const Profile& profile, std::string_view uuid, const std::filesystem::path& path) {
  std::optional<std::string> user_data_file;
  if (profile.cloud_init && profile.cloud_init->user_data) {
    const std::filesystem::path& source = *profile.cloud_init->user_data;
    user_data_file = store::read_file_if_exists(source);
    if (!user_data_file) {
      throw Error("cloud_init.user_data: " + source.string() + " does not exist any more");
    }
  }
  store::write_file_atomically(path, seed_image(seed_files(profile, uuid, user_data_file)));
}

}  // namespace qvm::cloud_init
