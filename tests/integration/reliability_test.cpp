// Killing anything at any moment never leaves a VM unmanageable, a state file corrupt, an
// image broken, or two QEMUs on one disk.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <future>
#include <nlohmann/json.hpp>
#include <set>

#include "process/run_program.hpp"
#include "store/files.hpp"
#include "store/layout.hpp"
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

class ReliabilityIntegrationTest : public testing::StateDirTest {
 protected:
  // How many QEMU processes carry this VM's UUID.
  int qemus(const std::string& uuid) {
    auto ps = testing::run_command({"pgrep", "-c", "-f", "--", "-uuid " + uuid});
    return ps.out.empty() ? 0 : std::stoi(ps.out);
  }

  // Runs qvm ARGS and SIGKILLs it after `delay`; returns whether it was still running.
  bool kill_after(const std::vector<std::string>& args, std::chrono::milliseconds delay) {
    std::vector<std::string> argv = {testing::qvm_binary().string(), "--state-dir", state_.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    auto result = testing::run_command(argv, {}, "", delay);
    return result.exit_code == -1;
  }

  // Every state.json parses, and what ls says matches the processes that exist.
  void expect_consistent(const std::string& name) {
    // Killed before the VM was even defined: then there is nothing, which is consistent.
    if (!fs::exists(state_ / "vms" / name / "profile.toml")) {
      EXPECT_EQ(qvm({"ls"}).out.find(name), std::string::npos);
      return;
    }
    if (auto text = store::read_file_if_exists(state_ / "vms" / name / "state.json")) {
      EXPECT_FALSE(nlohmann::json::parse(*text, nullptr, false).is_discarded()) << *text;
    }
    nlohmann::json s = status(name);
    const std::string state = s.value("state", "?");
    const int running = qemus(s["uuid"]);
    if (state == "running" || state == "paused" || state == "starting") {
      EXPECT_EQ(running, 1) << s.dump();
      EXPECT_TRUE(s["supervisor_pid"].is_number()) << s.dump();
    } else if (state == "stopping") {
      // The ladder goes on without the command that asked for it.
      EXPECT_LE(running, 1) << s.dump();
      EXPECT_TRUE(s["supervisor_pid"].is_number()) << s.dump();
    } else {
      EXPECT_EQ(running, 0) << s.dump();
    }
  }

  void expect_images_clean(const std::string& name) {
    std::vector<fs::path> images;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(state_ / "vms" / name / "disks", ec)) images.push_back(entry.path());
    for (const auto& entry : fs::directory_iterator(dir_.path(), ec)) {
      if (entry.path().extension() == ".qcow2") images.push_back(entry.path());
    }
    for (const auto& image : images) {
      auto check = process::run_program({"qemu-img", "check", "-U", image.string()});
      EXPECT_EQ(check.exit_code, 0) << image << "\n" << check.out;
    }
  }

  fs::path profile(const std::string& name, bool with_disk = true) {
    std::string disk;
    if (with_disk) disk = "[[disk]]\npath = \"" + (dir_ / (name + ".qcow2")).string() + "\"\nsize = \"32MiB\"\n";
    return testing::write_guest_profile(dir_, testing::guest(name).no_ready_wait().toml(disk));
  }

};

TEST_F(ReliabilityIntegrationTest, KilledSupervisorIsReplacedAndTheVmStaysManageable) {
  QVM_REQUIRE_TEST_GUEST();
  ASSERT_EQ(qvm({"up", profile("orphan").string()}).exit_code, 0);
  nlohmann::json before = status("orphan");
  const int qemu = before["pid"];
  ASSERT_EQ(::kill(before["supervisor_pid"].get<int>(), SIGKILL), 0);
  // Once the supervisor has exited, a QEMU tied to it (a parent-death signal, a lost pipe)
  // has had its cause to die; the status below would see it gone, not only this check.
  ASSERT_TRUE(testing::eventually([&] { return !testing::process_running(before["supervisor_pid"].get<int>()); }, 10s));
  EXPECT_EQ(::kill(qemu, 0), 0) << "QEMU died with its supervisor";

  // The next command notices and re-attaches; QEMU is the same process, and only one.
  nlohmann::json after = status("orphan");
  EXPECT_EQ(after["state"], "running");
  EXPECT_EQ(after["pid"], qemu);
  ASSERT_TRUE(after["supervisor_pid"].is_number());
  EXPECT_NE(after["supervisor_pid"], before["supervisor_pid"]);
  EXPECT_EQ(qemus(after["uuid"]), 1);
  EXPECT_NE(qvm({"events", "orphan"}).out.find("QVM_REATTACH"), std::string::npos);

  // Everything still works through the new supervisor.
  EXPECT_EQ(qvm({"up", profile("orphan").string()}).exit_code, 1) << "up must not start a second QEMU";
  EXPECT_EQ(qemus(after["uuid"]), 1);
  EXPECT_NE(qvm({"ls"}).out.find("orphan"), std::string::npos);
  auto snap = qvm({"snapshot", "create", "orphan", "s1"});
  EXPECT_EQ(snap.exit_code, 0) << snap.err;
  ASSERT_EQ(qvm({"pause", "orphan"}).exit_code, 0);
  EXPECT_EQ(status("orphan")["state"], "paused");
  auto down = qvm({"down", "orphan", "--timeout", "20"});
  ASSERT_EQ(down.exit_code, 0) << down.err;
  EXPECT_EQ(status("orphan")["state"], "stopped");
  EXPECT_EQ(qemus(after["uuid"]), 0);
}

TEST_F(ReliabilityIntegrationTest, StaleStateAfterAHostRebootIsRecognised) {
  QVM_REQUIRE_TEST_GUEST();
  ASSERT_EQ(qvm({"up", profile("ghost").string()}).exit_code, 0);
  nlohmann::json s = status("ghost");
  // A reboot takes both processes and keeps the files; the pid may now belong to anyone.
  ::kill(s["supervisor_pid"].get<int>(), SIGKILL);
  ::kill(s["pid"].get<int>(), SIGKILL);
  ASSERT_TRUE(testing::eventually([&] {
    return !testing::process_running(s["supervisor_pid"].get<int>()) && !testing::process_running(s["pid"].get<int>());
  }, 10s));
  auto state = nlohmann::json::parse(testing::read_file(state_ / "vms/ghost/state.json"));
  state["pid"] = ::getpid();  // a live process that is not this VM's QEMU
  store::write_file_atomically(state_ / "vms/ghost/state.json", state.dump());
  nlohmann::json now = status("ghost");
  EXPECT_EQ(now["state"], "crashed");
  EXPECT_EQ(now["reason_code"], "vanished");
  EXPECT_TRUE(now["pid"].is_null());
  EXPECT_EQ(::kill(::getpid(), 0), 0) << "the unrelated process must not have been touched";
  auto start = qvm({"start", "ghost"});
  EXPECT_EQ(start.exit_code, 0) << start.err;
  EXPECT_EQ(qvm({"kill", "ghost"}).exit_code, 0);
}

TEST_F(ReliabilityIntegrationTest, SigkillOfUpAndDownAtManyPointsNeverCorruptsAnything) {
  QVM_REQUIRE_TEST_GUEST();
  auto path = profile("victim");
  int interrupted = 0;
  for (int delay_ms : {50, 150, 300, 600, 1000, 2000}) {
    SCOPED_TRACE("up killed after " + std::to_string(delay_ms) + " ms");
    interrupted += kill_after({"up", path.string()}, std::chrono::milliseconds(delay_ms));
    ASSERT_TRUE(testing::eventually([&] { return status("victim").value("state", "") != "starting"; }, 30s));
    expect_consistent("victim");
    // Whatever state it is in, the next command takes it from there.
    auto retry = qvm({"up", path.string()});
    EXPECT_TRUE(retry.exit_code == 0 || retry.err.find("already running") != std::string::npos) << retry.err;
    EXPECT_EQ(status("victim")["state"], "running");
    expect_consistent("victim");

    SCOPED_TRACE("down killed after " + std::to_string(delay_ms) + " ms");
    interrupted += kill_after({"down", "victim", "--timeout", "5"}, std::chrono::milliseconds(delay_ms));
    expect_consistent("victim");
    ASSERT_EQ(qvm({"down", "victim", "--timeout", "5"}).exit_code, 0);
    EXPECT_EQ(status("victim")["state"], "stopped");
    expect_consistent("victim");
  }
  EXPECT_GE(interrupted, 6) << "most kills should land while the command runs";
  expect_images_clean("victim");
}

TEST_F(ReliabilityIntegrationTest, SigkillOfSnapshotCommandsAtManyPointsKeepsChainsAndMetadataTrue) {
  QVM_REQUIRE_TEST_GUEST();
  ASSERT_EQ(qvm({"up", profile("snappy").string()}).exit_code, 0);
  int n = 0;
  for (int delay_ms : {20, 60, 120, 250, 500}) {
    SCOPED_TRACE("snapshot create killed after " + std::to_string(delay_ms) + " ms");
    const std::string name = "s" + std::to_string(++n);
    kill_after({"snapshot", "create", "snappy", name}, std::chrono::milliseconds(delay_ms));
    // Retrying finishes or redoes it; afterwards the snapshot exists exactly once.
    auto retry = qvm({"snapshot", "create", "snappy", name});
    EXPECT_TRUE(retry.exit_code == 0 || retry.err.find("already has a snapshot") != std::string::npos) << retry.err;
    auto meta = store::read_snapshot_meta(state_ / "vms/snappy");
    EXPECT_TRUE(meta.pending.is_null());
    EXPECT_TRUE(meta.find(name));
    // Every image the metadata names exists, and QEMU writes to the one it calls active.
    for (const auto& [image, overlay] : meta.overlays) EXPECT_TRUE(fs::exists(image)) << image;
    auto blocks = nlohmann::json::parse(qvm({"qmp", "snappy", "query-block"}).out);
    for (const auto& block : blocks) {
      if (block.value("qdev", "").find("disk0") != std::string::npos) {
        EXPECT_EQ(block["inserted"]["file"], meta.active.at(0).string());
      }
    }
  }
  for (int delay_ms : {20, 80, 200}) {
    SCOPED_TRACE("snapshot rm killed after " + std::to_string(delay_ms) + " ms");
    const std::string name = "s" + std::to_string(n--);
    kill_after({"snapshot", "rm", "snappy", name}, std::chrono::milliseconds(delay_ms));
    auto retry = qvm({"snapshot", "rm", "snappy", name});
    EXPECT_TRUE(retry.exit_code == 0 || retry.err.find("has no snapshot named") != std::string::npos) << retry.err;
    auto meta = store::read_snapshot_meta(state_ / "vms/snappy");
    EXPECT_FALSE(meta.find(name));
    EXPECT_TRUE(meta.pending.is_null());
    for (const auto& [image, overlay] : meta.overlays) EXPECT_TRUE(fs::exists(image)) << image;
  }
  ASSERT_EQ(qvm({"down", "snappy", "--force"}).exit_code, 0);
  expect_images_clean("snappy");
  EXPECT_EQ(qvm({"start", "snappy"}).exit_code, 0) << "the chain must still open";
}

TEST_F(ReliabilityIntegrationTest, TwentyVmsUpInParallelAllRunAndAllStop) {
  QVM_REQUIRE_TEST_GUEST();
  // No OS: SeaBIOS finds nothing to boot and idles, so twenty of them fit on two cores.
  auto path = dir_.write("idle.toml", "name = \"idle\"\nmemory = \"64MiB\"\naccel = \"tcg\"\n[[net]]\nmode = \"none\"\n");
  std::vector<std::future<CommandResult>> ups;
  for (int i = 0; i < 20; ++i) {
    ups.push_back(std::async(std::launch::async, [&, i] {
      return qvm({"up", "--name", "idle-" + std::to_string(i), path.string()}, 300s);
    }));
  }
  for (auto& up : ups) {
    auto result = up.get();
    EXPECT_EQ(result.exit_code, 0) << result.err;
  }
  auto list = nlohmann::json::parse(qvm({"ls", "--json"}).out);
  std::set<int> pids;
  for (const auto& vm : list) {
    EXPECT_EQ(vm["state"], "running") << vm.dump();
    if (vm["pid"].is_number()) pids.insert(vm["pid"].get<int>());
  }
  EXPECT_EQ(pids.size(), 20u);

  // 50 concurrent status calls against one VM all answer.
  std::vector<std::future<CommandResult>> statuses;
  for (int i = 0; i < 50; ++i) {
    statuses.push_back(std::async(std::launch::async, [&] { return qvm({"status", "idle-7", "--json"}); }));
  }
  for (auto& s : statuses) {
    auto result = s.get();
    ASSERT_EQ(result.exit_code, 0) << result.err;
    EXPECT_EQ(nlohmann::json::parse(result.out)["state"], "running");
  }

  std::vector<std::future<CommandResult>> downs;
  for (int i = 0; i < 20; ++i) {
    downs.push_back(std::async(std::launch::async, [&, i] {
      return qvm({"down", "idle-" + std::to_string(i), "--timeout", "1"}, 300s);
    }));
  }
  for (auto& down : downs) {
    auto result = down.get();
    EXPECT_EQ(result.exit_code, 0) << result.err;
  }
  for (const auto& vm : nlohmann::json::parse(qvm({"ls", "--json"}).out)) {
    EXPECT_EQ(vm["state"], "stopped") << vm.dump();
    EXPECT_EQ(vm["reason"], "host request");
  }
  for (int pid : pids) EXPECT_NE(::kill(pid, 0), 0) << "QEMU " << pid << " still runs";
}

TEST_F(ReliabilityIntegrationTest, StateAndSocketsArePrivate) {
  QVM_REQUIRE_TEST_GUEST();
  ASSERT_EQ(qvm({"up", profile("private").string()}).exit_code, 0);
  auto mode = [](const fs::path& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 0777;
  };
  nlohmann::json s = status("private");
  EXPECT_EQ(mode(state_), 0700u);
  EXPECT_EQ(mode(state_ / "vms"), 0700u);
  EXPECT_EQ(mode(state_ / "vms/private"), 0700u);
  EXPECT_EQ(mode(s["runtime_dir"].get<std::string>()), 0700u);
  for (const char* socket : {"qmp", "console", "control"}) {
    EXPECT_EQ(mode(s["sockets"][socket].get<std::string>()), 0600u) << socket;
  }
  EXPECT_EQ(mode(state_ / "vms/private/state.json"), 0600u);
  EXPECT_EQ(mode(state_ / "vms/private/serial.log"), 0600u);
  EXPECT_EQ(mode(dir_ / "private.qcow2"), 0600u);
}

}  // namespace
}  // namespace qvm
