// Snapshots on the real test guest (TCG): the guest writes markers to its disk through the
// serial shell, and what it reads back after revert / rm is what the user would see.
#include <gtest/gtest.h>
#include <signal.h>

#include <future>
#include <nlohmann/json.hpp>

#include "process/run_program.hpp"
#include "store/snapshot_meta.hpp"
#include "support/state_dir_test.hpp"
#include "support/cli_runner.hpp"
#include "support/guest_shell.hpp"
#include "support/temp_dir.hpp"
#include "support/test_guest.hpp"
#include "support/wait.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::CommandResult;
using testing::TempDir;

class SnapshotIntegrationTest : public testing::StateDirTest {
 protected:
  // Boots the guest with one 64 MiB qcow2 data disk (the guest's /dev/vda).
  void up(const std::string& name, const std::string& extra = "") {
    auto profile = testing::write_guest_profile(
        dir_, testing::guest(name).toml("[[disk]]\npath = \"" + (dir_ / (name + ".qcow2")).string() +
                                        "\"\nsize = \"64MiB\"\n" + extra));
    auto result = qvm({"up", profile.string()});
    ASSERT_EQ(result.exit_code, 0) << result.err;
  }

  std::string guest(const std::string& name, const std::string& command, std::chrono::seconds timeout = 60s) {
    int code = -1;
    std::string out = testing::run_in_guest(status(name)["sockets"]["console"].get<std::string>(), command,
                                            timeout, &code);
    EXPECT_EQ(code, 0) << command << "\n" << out;
    return out;
  }

  // Writes `text` into 512-byte sector `sector` of the data disk, synchronously.
  void write_marker(const std::string& name, int sector, const std::string& text) {
    guest(name, "printf '" + text + "' | dd of=/dev/vda bs=512 seek=" + std::to_string(sector) +
                    " conv=sync,fsync 2>/dev/null");
  }

  // The start of sector `sector`, read by the guest straight from the device.
  std::string read_marker(const std::string& name, int sector) {
    std::string out = guest(name, "dd if=/dev/vda bs=512 skip=" + std::to_string(sector) +
                                      " count=1 2>/dev/null | tr -d '\\000'; echo '|'");
    auto bar = out.find('|');
    std::string text = out.substr(0, bar == std::string::npos ? out.size() : bar);
    // Only the printable marker matters, not prompts or line ends around it.
    std::string clean;
    for (char c : text) {
      if (std::isalnum(static_cast<unsigned char>(c)) || c == '-') clean += c;
    }
    return clean;
  }

  std::vector<fs::path> images(const std::string& name) {
    std::vector<fs::path> all = {dir_ / (name + ".qcow2")};
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(state_ / "vms" / name / "disks", ec)) all.push_back(entry.path());
    return all;
  }

  void expect_images_check_clean(const std::string& name) {
    for (const auto& image : images(name)) {
      auto check = process::run_program({"qemu-img", "check", "-U", image.string()});
      EXPECT_EQ(check.exit_code, 0) << image << "\n" << check.out;
    }
  }

};

TEST_F(SnapshotIntegrationTest, RevertBringsBackWhatWasThereAndDropsWhatCameAfter) {
  QVM_REQUIRE_TEST_GUEST();
  up("mark");
  write_marker("mark", 0, "MARKER-A");
  auto create = qvm({"snapshot", "create", "mark", "s1", "--description", "after A"});
  ASSERT_EQ(create.exit_code, 0) << create.err;
  EXPECT_EQ(create.out, "mark: snapshot s1 created (running)\n");
  write_marker("mark", 8, "MARKER-B");
  EXPECT_EQ(read_marker("mark", 8), "MARKER-B");

  auto revert = qvm({"snapshot", "revert", "mark", "s1"});
  ASSERT_EQ(revert.exit_code, 0) << revert.err;
  EXPECT_EQ(status("mark")["state"], "running");
  EXPECT_EQ(read_marker("mark", 0), "MARKER-A");
  EXPECT_EQ(read_marker("mark", 8), "") << "B was written after s1 and must be gone";

  auto ls = nlohmann::json::parse(qvm({"snapshot", "ls", "mark", "--json"}).out);
  EXPECT_EQ(ls["current"], "s1");
  ASSERT_EQ(ls["snapshots"].size(), 1u);
  EXPECT_EQ(ls["snapshots"][0]["description"], "after A");
  EXPECT_EQ(ls["snapshots"][0]["vm_state"], "running");
  // The frozen image is never written: its own view still lacks B.
  ASSERT_EQ(qvm({"down", "mark"}).exit_code, 0);
  expect_images_check_clean("mark");
}

TEST_F(SnapshotIntegrationTest, ChainOfThreeRevertToTheMiddleThenDeleteItLive) {
  QVM_REQUIRE_TEST_GUEST();
  up("chain");
  for (int version = 1; version <= 3; ++version) {
    write_marker("chain", 0, "V" + std::to_string(version));
    ASSERT_EQ(qvm({"snapshot", "create", "chain", "s" + std::to_string(version)}).exit_code, 0);
  }
  write_marker("chain", 0, "V4");
  ASSERT_EQ(qvm({"snapshot", "revert", "chain", "s2"}).exit_code, 0);
  EXPECT_EQ(read_marker("chain", 0), "V2");
  write_marker("chain", 1, "LATEST");

  auto tree = qvm({"snapshot", "ls", "chain"});
  EXPECT_NE(tree.out.find("s2 *"), std::string::npos) << tree.out;

  // s2 is the snapshot the running VM sits on, and s3 sits on it too.
  auto rm = qvm({"snapshot", "rm", "chain", "s2"});
  ASSERT_EQ(rm.exit_code, 0) << rm.err;
  EXPECT_EQ(status("chain")["state"], "running");
  EXPECT_EQ(read_marker("chain", 0), "V2");
  EXPECT_EQ(read_marker("chain", 1), "LATEST");
  auto ls = nlohmann::json::parse(qvm({"snapshot", "ls", "chain", "--json"}).out);
  EXPECT_EQ(ls["current"], "s1");
  ASSERT_EQ(ls["snapshots"].size(), 2u);
  EXPECT_EQ(ls["snapshots"][1]["name"], "s3");
  EXPECT_EQ(ls["snapshots"][1]["parent"], "s1");
  expect_images_check_clean("chain");

  // The other snapshots still hold what they held.
  ASSERT_EQ(qvm({"snapshot", "revert", "chain", "s3"}).exit_code, 0);
  EXPECT_EQ(read_marker("chain", 0), "V3");
  ASSERT_EQ(qvm({"snapshot", "revert", "chain", "s1"}).exit_code, 0);
  EXPECT_EQ(read_marker("chain", 0), "V1");
  ASSERT_EQ(qvm({"down", "chain"}).exit_code, 0);
  expect_images_check_clean("chain");
  // Only images that a snapshot or the VM still needs are left.
  const auto meta = store::read_snapshot_meta(state_ / "vms" / "chain");
  std::size_t overlays = 0;
  for (const auto& image : images("chain")) overlays += image.parent_path().filename() == "disks";
  EXPECT_EQ(overlays, meta.overlays.size());
  EXPECT_EQ(meta.overlays.size(), 2u) << "s3's frozen image and the active overlay";
}

TEST_F(SnapshotIntegrationTest, OfflineSnapshotsUseQemuImgAndRevertWithoutStarting) {
  QVM_REQUIRE_TEST_GUEST();
  up("cold");
  write_marker("cold", 0, "COLD-1");
  ASSERT_EQ(qvm({"down", "cold"}).exit_code, 0);
  auto create = qvm({"snapshot", "create", "cold", "before"});
  ASSERT_EQ(create.exit_code, 0) << create.err;
  EXPECT_EQ(create.out, "cold: snapshot before created (stopped)\n");
  ASSERT_EQ(qvm({"start", "cold"}).exit_code, 0);
  EXPECT_EQ(read_marker("cold", 0), "COLD-1");
  write_marker("cold", 0, "COLD-2");
  ASSERT_EQ(qvm({"down", "cold"}).exit_code, 0);
  auto revert = qvm({"snapshot", "revert", "cold", "before"});
  ASSERT_EQ(revert.exit_code, 0) << revert.err;
  EXPECT_EQ(status("cold")["state"], "stopped") << "reverting a stopped VM does not start it";
  ASSERT_EQ(qvm({"start", "cold"}).exit_code, 0);
  EXPECT_EQ(read_marker("cold", 0), "COLD-1");
  ASSERT_EQ(qvm({"down", "cold"}).exit_code, 0);
  ASSERT_EQ(qvm({"snapshot", "rm", "cold", "before"}).exit_code, 0);
  EXPECT_EQ(qvm({"snapshot", "ls", "cold"}).out, "no snapshots\n");
  expect_images_check_clean("cold");
}

TEST_F(SnapshotIntegrationTest, QemuKilledDuringADeleteLeavesAChainThatOpensAndARetryFinishesIt) {
  QVM_REQUIRE_TEST_GUEST();
  up("crash");
  ASSERT_EQ(qvm({"snapshot", "create", "crash", "s1"}).exit_code, 0);
  // 16 MiB of data above s1, for the merge to chew on.
  guest("crash", "dd if=/dev/urandom of=/dev/vda bs=1M count=16 seek=8 conv=fsync 2>/dev/null", 120s);
  write_marker("crash", 0, "KEEP-ME");
  ASSERT_EQ(qvm({"snapshot", "create", "crash", "s2"}).exit_code, 0);
  const int pid = status("crash")["pid"];

  // Merging s2's 16 MiB at 1 MiB/s takes long enough to kill QEMU in the middle.
  auto rm = std::async(std::launch::async, [&] {
    return testing::run_command({testing::qvm_binary().string(), "--state-dir", state_.string(), "snapshot", "rm",
                                 "crash", "s2"},
                                {{"QVM_STREAM_SPEED", "1048576"}}, "", 120s);
  });
  // Killed once the merge runs: QEMU tells every monitor, the supervisor's journals it.
  ASSERT_TRUE(testing::eventually(
      [&] {
        return testing::journal_has(state_ / "vms/crash/events.jsonl", "JOB_STATUS_CHANGE", {{"status", "running"}});
      },
      60s))
      << testing::read_file(state_ / "vms/crash/events.jsonl");
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  CommandResult interrupted = rm.get();
  EXPECT_NE(interrupted.exit_code, 0) << "the merge finished before QEMU was killed; make it slower";
  ASSERT_TRUE(testing::eventually([&] { return status("crash")["state"] == "crashed"; }, 10s));

  // Every image passes qemu-img check and the chain still opens from the top.
  expect_images_check_clean("crash");
  auto meta = store::read_snapshot_meta(state_ / "vms" / "crash");
  ASSERT_TRUE(meta.find("s2")) << "an unfinished delete keeps the snapshot";
  for (const auto& [path, overlay] : meta.overlays) EXPECT_TRUE(fs::exists(path)) << path;
  auto chain = process::run_program({"qemu-img", "info", "--backing-chain", meta.active.at(0).string()});
  EXPECT_EQ(chain.exit_code, 0) << chain.out;

  auto retry = qvm({"snapshot", "rm", "crash", "s2"});
  ASSERT_EQ(retry.exit_code, 0) << retry.err;
  meta = store::read_snapshot_meta(state_ / "vms" / "crash");
  EXPECT_FALSE(meta.find("s2"));
  EXPECT_TRUE(meta.pending.is_null());
  expect_images_check_clean("crash");
  ASSERT_EQ(qvm({"start", "crash"}).exit_code, 0);
  EXPECT_EQ(read_marker("crash", 0), "KEEP-ME");
}

TEST_F(SnapshotIntegrationTest, BadNamesUnknownSnapshotsAndRawDisksAreRefused) {
  QVM_REQUIRE_TEST_GUEST();
  up("picky");
  auto bad = qvm({"snapshot", "create", "picky", "../etc"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("\"../etc\" is not a snapshot name"), std::string::npos) << bad.err;
  auto unknown = qvm({"snapshot", "revert", "picky", "nope"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("has no snapshot named \"nope\""), std::string::npos) << unknown.err;
  EXPECT_EQ(status("picky")["state"], "running") << "a refused revert must not stop the VM";
  auto unknown_rm = qvm({"snapshot", "rm", "picky", "nope"});
  EXPECT_EQ(unknown_rm.exit_code, 1);
  ASSERT_EQ(qvm({"snapshot", "create", "picky", "one"}).exit_code, 0);
  auto twice = qvm({"snapshot", "create", "picky", "one"});
  EXPECT_EQ(twice.exit_code, 1);
  EXPECT_NE(twice.err.find("already has a snapshot named \"one\""), std::string::npos) << twice.err;

  up("rawvm", "[[disk]]\npath = \"" + (dir_ / "raw.img").string() + "\"\nsize = \"16MiB\"\n");
  auto raw = qvm({"snapshot", "create", "rawvm", "s"});
  EXPECT_EQ(raw.exit_code, 1);
  EXPECT_NE(raw.err.find("is a raw image, and snapshots need qcow2 disks"), std::string::npos) << raw.err;
  EXPECT_EQ(qvm({"snapshot", "ls", "rawvm"}).out, "no snapshots\n");
}

}  // namespace
}  // namespace qvm
