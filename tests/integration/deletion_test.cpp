// A tampered snapshots.json in front of the real binary: the recovery that `qvm start` and
// `qvm up` run before QEMU opens the disks refuses it by path and deletes nothing, and once
// the record is fixed the VM boots on its disk as before.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "process/run_program.hpp"
#include "qvm/profile.hpp"
#include "qvm/vm.hpp"
#include "support/state_dir_test.hpp"
#include "support/test_guest.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class DeletionIntegrationTest : public testing::StateDirTest {
 protected:
  void SetUp() override {
    QVM_REQUIRE_TEST_GUEST();
    disk_ = dir_ / "g.qcow2";
    ASSERT_EQ(
        process::run_program({"qemu-img", "create", "-q", "-f", "qcow2", disk_.string(), "64M"})
            .exit_code,
        0);
    profile_ = testing::write_guest_profile(
        dir_, testing::guest("g").toml("[[disk]]\npath = \"" + disk_.string() + "\"\n"));
    Inventory::open(state_)->define(load_profile(profile_));
  }

  fs::path meta_file() const { return state_ / "vms" / "g" / "snapshots.json"; }

  // A snapshot create that crashed before its overlay existed, as recorded in snapshots.json,
  // except that the overlay it names is `overlay`.
  void plant_pending_create(const fs::path& overlay) {
    nlohmann::json meta = {
        {"version", 1},
        {"current", nullptr},
        {"next_sequence", 2},
        {"active", nlohmann::json::object()},
        {"overlays", nlohmann::json::object()},
        {"snapshots", nlohmann::json::array()},
        {"pending",
         {{"op", "create"},
          {"name", "s1"},
          {"live", false},
          {"disks", {{"0", {{"overlay", overlay.string()}, {"frozen", disk_.string()}}}}}}}};
    std::ofstream(meta_file(), std::ios::trunc) << meta.dump(2);
  }

  void expect_refused(const std::vector<std::string>& args, const fs::path& victim,
                      const std::string& why) {
    const auto result = qvm(args);
    EXPECT_EQ(result.exit_code, 1) << result.err;
    EXPECT_TRUE(result.err.starts_with("qvm: error: ")) << result.err;
    EXPECT_NE(result.err.find(meta_file().string() + " names " + victim.string()),
              std::string::npos)
        << result.err;
    EXPECT_NE(result.err.find(why), std::string::npos) << result.err;
    EXPECT_TRUE(fs::exists(victim)) << victim << " was deleted by " << args[0];
    EXPECT_EQ(status("g").value("state", ""), "stopped");
  }

  fs::path disk_, profile_;
};

TEST_F(DeletionIntegrationTest, StartAndUpNeverDeleteAFileOutsideTheVmFolder) {
  const fs::path victim = dir_.write("home/user/thesis.tex", "\\documentclass{article}\n");
  plant_pending_create(victim);
  expect_refused({"start", "g"}, victim, "lies outside the VM's folder");
  expect_refused({"up", profile_.string()}, victim, "lies outside the VM's folder");
  EXPECT_EQ(testing::read_file(victim), "\\documentclass{article}\n");
}

TEST_F(DeletionIntegrationTest, StartNeverDeletesTheProfilesOwnImageAndBootsOnItOnceFixed) {
  plant_pending_create(disk_);
  expect_refused({"start", "g"}, disk_, "is the image of disk 0 in the VM's profile");
  EXPECT_EQ(process::run_program({"qemu-img", "check", disk_.string()}).exit_code, 0);
  // The fix the error gives: drop the "pending" entry.
  auto meta = nlohmann::json::parse(testing::read_file(meta_file()));
  meta.erase("pending");
  std::ofstream(meta_file(), std::ios::trunc) << meta.dump(2);
  const auto started = qvm({"start", "g"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  EXPECT_EQ(status("g").value("state", ""), "running");
  EXPECT_EQ(qvm({"kill", "g"}).exit_code, 0);
  EXPECT_TRUE(fs::exists(disk_));
}

}  // namespace
}  // namespace qvm
