#include "cloud_init/seed.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "cloud_init/iso9660.hpp"
#include "support/temp_dir.hpp"

namespace qvm::cloud_init {
namespace {

namespace fs = std::filesystem;
constexpr const char* kUuid = "6f1c2a3b-4d5e-8f60-9a1b-2c3d4e5f6071";
constexpr const char* kKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKx1 me@laptop";

Profile profile_with(std::string name, CloudInit cloud_init) {
  Profile profile;
  profile.name = std::move(name);
  profile.cloud_init = std::move(cloud_init);
  return profile;
}

TEST(CloudInitTest, MetaDataCarriesTheUuidAndHostname) {
  CloudInit cloud_init;
  cloud_init.hostname = "build.example.org";
  EXPECT_EQ(
      "instance-id: \"6f1c2a3b-4d5e-8f60-9a1b-2c3d4e5f6071\"\n"
      "local-hostname: \"build.example.org\"\n",
      seed_files(profile_with("dev", cloud_init), kUuid).meta_data);
}

TEST(CloudInitTest, HostnameDefaultsToTheNameMadeValid) {
  EXPECT_EQ("dev", seed_hostname(profile_with("dev", {})));
  EXPECT_EQ("web-prod-2", seed_hostname(profile_with("web.prod_2", {})));
  EXPECT_EQ("a", seed_hostname(profile_with("a._", {})));
  CloudInit named;
  named.hostname = "given";
  EXPECT_EQ("given", seed_hostname(profile_with("web.prod_2", named)));
}

TEST(CloudInitTest, UserGetsSudoAndTheKeys) {
  CloudInit cloud_init;
  cloud_init.user = "alice";
  cloud_init.ssh_authorized_keys = {kKey, "ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB \"quoted\" # not a comment"};
  EXPECT_EQ(
      "#cloud-config\n"
      "hostname: \"dev\"\n"
      "users:\n"
      "  - name: \"alice\"\n"
      "    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n"
      "    shell: /bin/bash\n"
      "    lock_passwd: true\n"
      "    ssh_authorized_keys:\n"
      "      - \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKx1 me@laptop\"\n"
      "      - \"ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB \\\"quoted\\\" # not a comment\"\n",
      seed_files(profile_with("dev", cloud_init), kUuid).user_data);
}

TEST(CloudInitTest, KeysWithoutUserGoToTheDefaultUser) {
  CloudInit cloud_init;
  cloud_init.ssh_authorized_keys = {kKey};
  EXPECT_EQ(
      "#cloud-config\n"
      "hostname: \"ci-1\"\n"
      "ssh_authorized_keys:\n"
      "  - \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKx1 me@laptop\"\n",
      seed_files(profile_with("ci_1", cloud_init), kUuid).user_data);
}

TEST(CloudInitTest, UserWithoutKeysAndEmptyTable) {
  CloudInit user_only;
  user_only.user = "bob";
  const std::string user_data = seed_files(profile_with("dev", user_only), kUuid).user_data;
  EXPECT_NE(std::string::npos, user_data.find("  - name: \"bob\"\n"));
  EXPECT_EQ(std::string::npos, user_data.find("ssh_authorized_keys")) << user_data;
  EXPECT_EQ("#cloud-config\nhostname: \"dev\"\n", seed_files(profile_with("dev", {}), kUuid).user_data);
}

TEST(CloudInitTest, UserDataFileIsTakenVerbatim) {
  CloudInit cloud_init;
  cloud_init.user_data = "/vm/user-data.yaml";
  cloud_init.hostname = "box";
  const std::string file = "#!/bin/sh\necho hello from a script\n";
  const SeedFiles files = seed_files(profile_with("dev", cloud_init), kUuid, file);
  EXPECT_EQ(file, files.user_data);
  EXPECT_EQ("instance-id: \"6f1c2a3b-4d5e-8f60-9a1b-2c3d4e5f6071\"\nlocal-hostname: \"box\"\n",
            files.meta_data);
}

TEST(CloudInitTest, SeedImageIsACidataIsoWithBothFiles) {
  const SeedFiles files{"instance-id: \"x\"\n", "#cloud-config\n"};
  // The format itself is tested in iso9660_test.cpp; here, what goes into it.
  EXPECT_EQ(make_iso9660("cidata", {{"meta-data", files.meta_data}, {"user-data", files.user_data}}),
            seed_image(files));
}

TEST(CloudInitTest, WriteSeedWritesThePrivateImageAndReadsUserData) {
  testing::TempDir dir;
  CloudInit cloud_init;
  cloud_init.user_data = dir.write("user-data.yaml", "#cloud-config\npackages: [htop]\n");
  const Profile profile = profile_with("dev", cloud_init);
  const fs::path seed = dir / "state" / "cloud-init.iso";
  fs::create_directories(seed.parent_path());
  dir.write("state/cloud-init.iso", "stale");

  write_seed(profile, kUuid, seed);
  EXPECT_EQ(seed_image(seed_files(profile, kUuid, "#cloud-config\npackages: [htop]\n")),
            testing::read_file(seed));
  struct stat info {};
  ASSERT_EQ(0, ::stat(seed.c_str(), &info));
  EXPECT_EQ(0600u, info.st_mode & 0777);
}

TEST(CloudInitTest, WriteSeedFailsClearlyWhenUserDataVanished) {
  testing::TempDir dir;
  CloudInit cloud_init;
  cloud_init.user_data = dir / "gone.yaml";
  try {
    write_seed(profile_with("dev", cloud_init), kUuid, dir / "cloud-init.iso");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ("cloud_init.user_data: " + (dir / "gone.yaml").string() + " does not exist any more",
              std::string(e.what()));
  }
  EXPECT_FALSE(fs::exists(dir / "cloud-init.iso"));
}

}  // namespace
}  // namespace qvm::cloud_init
