// The libvirt lifecycle, end to end, through the qvm binary and the real test guest (TCG).
#include <gtest/gtest.h>
#include <signal.h>

#include <future>
#include <set>
#include <sstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "store/files.hpp"
#include "supervisor/launch.hpp"
#include "support/state_dir_test.hpp"
#include "support/cli_runner.hpp"
#include "support/temp_dir.hpp"
#include "support/test_guest.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::CommandResult;
using testing::TempDir;

class LifecycleIntegrationTest : public testing::StateDirTest {
 protected:
  // Every VM these tests ask about exists: a failed `status` is a failure of the test.
  nlohmann::json status(const std::string& name) {
    const CommandResult result = qvm({"status", name, "--json"});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return nlohmann::json::parse(result.out.empty() ? "{}" : result.out);
  }

  std::string state_of(const std::string& name) { return status(name).value("state", "?"); }

  fs::path serial_log(const std::string& name) { return state_ / "vms" / name / "serial.log"; }

  fs::path profile(const testing::GuestProfile& options) {
    return testing::write_guest_profile(dir_, options);
  }

};

TEST_F(LifecycleIntegrationTest, ClassicLifecycleFromUpToRm) {
  QVM_REQUIRE_TEST_GUEST();
  auto up = qvm({"up", profile(testing::guest("life")).string()});
  ASSERT_EQ(up.exit_code, 0) << up.err;
  EXPECT_NE(up.out.find("life: running (QEMU pid "), std::string::npos) << up.out;
  EXPECT_EQ(testing::count_in_file(serial_log("life"), testing::kGuestReady), 1);
  nlohmann::json running = status("life");
  EXPECT_EQ(running["state"], "running");
  EXPECT_EQ(running["accel"], "tcg");
  ASSERT_TRUE(running["pid"].is_number());
  const int pid = running["pid"];
  EXPECT_TRUE(supervisor::is_vm_qemu(pid, VmStatus::from_json(running).qemu));

  ASSERT_EQ(qvm({"pause", "life"}).exit_code, 0);
  EXPECT_EQ(state_of("life"), "paused");
  EXPECT_EQ(nlohmann::json::parse(qvm({"qmp", "life", "query-status"}).out)["status"], "paused");
  ASSERT_EQ(qvm({"resume", "life"}).exit_code, 0);
  EXPECT_EQ(state_of("life"), "running");

  auto reboot = qvm({"reboot", "life"});
  ASSERT_EQ(reboot.exit_code, 0) << reboot.err;
  EXPECT_NE(reboot.out.find("reset"), std::string::npos) << reboot.out;
  EXPECT_TRUE(testing::eventually(
      [&] { return testing::count_in_file(serial_log("life"), testing::kGuestReady) == 2; }, 120s))
      << "no second boot on the serial console";
  EXPECT_EQ(state_of("life"), "running");

  auto down = qvm({"down", "life"});
  ASSERT_EQ(down.exit_code, 0) << down.err;
  EXPECT_NE(down.out.find("ACPI power button"), std::string::npos) << down.out;
  EXPECT_EQ(testing::count_in_file(serial_log("life"), "qvm-test-guest: power button"), 1);
  nlohmann::json stopped = status("life");
  EXPECT_EQ(stopped["state"], "stopped");
  EXPECT_EQ(stopped["reason"], "host request");
  EXPECT_EQ(stopped["exit_code"], 0);
  EXPECT_EQ(stopped["last_down_step"], "acpi");
  EXPECT_TRUE(stopped["pid"].is_null());
  EXPECT_NE(::kill(pid, 0), 0) << "QEMU is still alive";

  auto start = qvm({"start", "life"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  EXPECT_EQ(state_of("life"), "running");
  auto kill = qvm({"kill", "life"});
  ASSERT_EQ(kill.exit_code, 0) << kill.err;
  nlohmann::json killed = status("life");
  EXPECT_EQ(killed["state"], "stopped");
  EXPECT_EQ(killed["reason"], "host request (forced)");
  EXPECT_EQ(killed["exit_signal"], SIGKILL);

  auto ls = qvm({"ls"});
  EXPECT_NE(ls.out.find("life"), std::string::npos);
  ASSERT_EQ(qvm({"rm", "life"}).exit_code, 0);
  ls = qvm({"ls"});
  EXPECT_EQ(ls.out.find("life"), std::string::npos) << ls.out;
  EXPECT_FALSE(fs::exists(state_ / "vms" / "life"));

  // The journal recorded the whole story before rm took it away; events were checked above
  // through the state each one produced.
}

TEST_F(LifecycleIntegrationTest, GuestPoweroffIsAGuestShutdown) {
  QVM_REQUIRE_TEST_GUEST();
  ASSERT_EQ(qvm({"up", profile(testing::guest("self").cmdline("qvm.poweroff=1")).string()}).exit_code, 0);
  ASSERT_TRUE(testing::eventually([&] { return state_of("self") == "stopped"; }, 60s)) << state_of("self");
  nlohmann::json s = status("self");
  EXPECT_EQ(s["reason"], "guest shutdown");
  EXPECT_EQ(s["reason_code"], "guest-shutdown");
  EXPECT_EQ(s["exit_code"], 0);
  auto events = qvm({"events", "self"});
  EXPECT_NE(events.out.find("\"event\":\"SHUTDOWN\""), std::string::npos);
  EXPECT_NE(events.out.find("\"reason\":\"guest-shutdown\""), std::string::npos);
}

TEST_F(LifecycleIntegrationTest, KilledQemuIsCrashedWithTheSignal) {
  QVM_REQUIRE_TEST_GUEST();
  ASSERT_EQ(qvm({"up", profile(testing::guest("victim").no_ready_wait()).string()}).exit_code, 0);
  nlohmann::json s = status("victim");
  ASSERT_TRUE(s["pid"].is_number());
  ASSERT_EQ(::kill(s["pid"].get<int>(), SIGKILL), 0);
  ASSERT_TRUE(testing::eventually([&] { return state_of("victim") == "crashed"; }, 10s));
  s = status("victim");
  EXPECT_EQ(s["reason"], "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(s["reason_code"], "crash-signal");
  EXPECT_EQ(s["exit_signal"], 9);
}

TEST_F(LifecycleIntegrationTest, GuestThatIgnoresAcpiIsStoppedByQuitAfterTheTimeout) {
  QVM_REQUIRE_TEST_GUEST();
  ASSERT_EQ(qvm({"up", profile(testing::guest("deaf").cmdline("qvm.acpi=ignore")).string()}).exit_code, 0);
  auto down = qvm({"down", "deaf", "--timeout", "3"});
  ASSERT_EQ(down.exit_code, 0) << down.err;
  EXPECT_NE(down.out.find("QEMU quit on request"), std::string::npos) << down.out;
  EXPECT_GE(down.elapsed, 3s);
  nlohmann::json s = status("deaf");
  EXPECT_EQ(s["state"], "stopped");
  EXPECT_EQ(s["last_down_step"], "quit");
  EXPECT_EQ(s["reason"], "host request");
  EXPECT_EQ(testing::count_in_file(serial_log("deaf"), "qvm-test-guest: power button"), 0);
}

TEST_F(LifecycleIntegrationTest, GuestPanicIsItsOwnReason) {
  QVM_REQUIRE_TEST_GUEST();
  ASSERT_EQ(qvm({"up", profile(testing::guest("panicky").cmdline("qvm.panic=1")).string()}).exit_code, 0);
  ASSERT_TRUE(testing::eventually([&] { return state_of("panicky") == "crashed"; }, 60s)) << state_of("panicky");
  nlohmann::json s = status("panicky");
  EXPECT_EQ(s["reason"], "guest panic");
  EXPECT_EQ(s["reason_code"], "guest-panic");
  EXPECT_NE(qvm({"events", "panicky"}).out.find("GUEST_PANICKED"), std::string::npos);
}

TEST_F(LifecycleIntegrationTest, QemuThatFailsToStartFailsUpAtOnceWithItsLog) {
  QVM_REQUIRE_TEST_GUEST();
  auto path = profile(testing::guest("broken").toml("[qemu]\nextra_args = [\"-device\", \"no-such-device\"]\n"));
  auto up = qvm({"up", path.string()});
  EXPECT_EQ(up.exit_code, 1);
  EXPECT_LT(up.elapsed, 30s) << "up must not wait for a timeout";
  EXPECT_NE(up.err.find("during start"), std::string::npos) << up.err;
  EXPECT_NE(up.err.find("no-such-device"), std::string::npos) << up.err;
  nlohmann::json s = status("broken");
  EXPECT_EQ(s["state"], "crashed");
  EXPECT_EQ(s["reason_code"], "start-failed");
  EXPECT_TRUE(s["pid"].is_null());
}

TEST_F(LifecycleIntegrationTest, UpOfARunningVmSaysItIsRunning) {
  QVM_REQUIRE_TEST_GUEST();
  auto path = profile(testing::guest("twice").no_ready_wait());
  ASSERT_EQ(qvm({"up", path.string()}).exit_code, 0);
  int pid = status("twice")["pid"];
  auto again = qvm({"up", path.string()});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("\"twice\" is already running (QEMU pid " + std::to_string(pid) + ")"),
            std::string::npos)
      << again.err;
  EXPECT_EQ(status("twice")["pid"], pid);
}

TEST_F(LifecycleIntegrationTest, TwoConcurrentUpsOfOneNameMakeExactlyOneVm) {
  QVM_REQUIRE_TEST_GUEST();
  auto path = profile(testing::guest("race").no_ready_wait());
  auto first = std::async(std::launch::async, [&] { return qvm({"up", path.string()}); });
  auto second = std::async(std::launch::async, [&] { return qvm({"up", path.string()}); });
  CommandResult a = first.get(), b = second.get();
  EXPECT_EQ((a.exit_code == 0) + (b.exit_code == 0), 1) << a.err << "\n---\n" << b.err;
  // The loser finds the other's lock, or the VM already starting (the winner has written
  // its state and is waiting for QEMU) or running; which one depends on timing alone.
  const CommandResult& loser = a.exit_code == 0 ? b : a;
  EXPECT_TRUE(loser.err.find("VM \"race\" is already running") != std::string::npos ||
              loser.err.find("VM \"race\" is already starting") != std::string::npos ||
              loser.err.find("another qvm command is working on VM \"race\"") != std::string::npos)
      << loser.err;
  // Exactly one QEMU carries this VM's UUID.
  nlohmann::json s = status("race");
  auto ps = testing::run_command({"pgrep", "-c", "-f", "--", "-uuid " + s["uuid"].get<std::string>()});
  EXPECT_EQ(ps.out, "1\n");
}

TEST_F(LifecycleIntegrationTest, FiveVmsFromOneProfileWithNamesAllRun) {
  QVM_REQUIRE_TEST_GUEST();
  auto path = profile(testing::guest("dev").no_ready_wait().mem("128MiB"));
  std::vector<std::future<CommandResult>> ups;
  for (int i = 1; i <= 5; ++i) {
    ups.push_back(std::async(std::launch::async, [&, i] {
      return qvm({"up", "--name", "dev-" + std::to_string(i), path.string()});
    }));
  }
  for (auto& up : ups) {
    auto result = up.get();
    EXPECT_EQ(result.exit_code, 0) << result.err;
  }
  auto list = nlohmann::json::parse(qvm({"ls", "--json"}).out);
  std::set<std::string> uuids;
  int running = 0;
  for (const auto& vm : list) {
    running += vm["state"] == "running";
    uuids.insert(vm["uuid"].get<std::string>());
  }
  EXPECT_EQ(running, 5);
  EXPECT_EQ(uuids.size(), 5u) << "every VM needs its own UUID";
  for (int i = 1; i <= 5; ++i) {
    auto down = qvm({"down", "--force", "dev-" + std::to_string(i)});
    EXPECT_EQ(down.exit_code, 0) << down.err;
  }
}

TEST_F(LifecycleIntegrationTest, AVeryLongStateDirStillWorks) {
  QVM_REQUIRE_TEST_GUEST();
  fs::path long_dir = dir_.path();
  while (long_dir.string().size() < 200) long_dir /= "a-rather-long-folder-name";
  state_ = long_dir;
  ASSERT_GE(state_.string().size(), 200u);
  auto up = qvm({"up", profile(testing::guest("deep").no_ready_wait()).string()});
  ASSERT_EQ(up.exit_code, 0) << up.err;
  nlohmann::json s = status("deep");
  EXPECT_EQ(s["state"], "running");
  EXPECT_LT(s["sockets"]["qmp"].get<std::string>().size(), 108u);
  EXPECT_EQ(nlohmann::json::parse(qvm({"qmp", "deep", "query-status"}).out)["status"], "running");
  EXPECT_EQ(qvm({"down", "--force", "deep"}).exit_code, 0);
}

TEST_F(LifecycleIntegrationTest, InterruptedUpLeavesAConsistentRunningVm) {
  QVM_REQUIRE_TEST_GUEST();
  // `up` waits for the serial line; kill it half-way. The VM must come up regardless.
  auto path = profile(testing::guest("orphan"));
  auto up = testing::run_command({testing::qvm_binary().string(), "--state-dir", state_.string(), "up",
                                  path.string()},
                                 {}, "", 2s);
  EXPECT_EQ(up.exit_code, -1) << "up finished too early to be interrupted";
  ASSERT_TRUE(testing::eventually([&] { return status("orphan").value("ready", false); }, 120s))
      << status("orphan").dump();
  EXPECT_EQ(state_of("orphan"), "running");
  EXPECT_EQ(qvm({"down", "orphan"}).exit_code, 0);
  EXPECT_EQ(state_of("orphan"), "stopped");
}

}  // namespace
}  // namespace qvm

namespace qvm {
namespace {

TEST_F(LifecycleIntegrationTest, ConsoleLogsAndEventsShowWhatTheGuestDid) {
  QVM_REQUIRE_TEST_GUEST();
  ASSERT_EQ(qvm({"up", profile(testing::guest("talk")).string()}).exit_code, 0);
  // Piped input goes to the guest's shell; its answer comes back on stdout.
  auto console = testing::qvm(state_, {"console", "talk"}, 60s, "echo hello-$((6*7))\n");
  ASSERT_EQ(console.exit_code, 0) << console.err;
  EXPECT_NE(console.out.find("hello-42"), std::string::npos) << console.out;
  // The serial log has it too, and `logs` prints the log.
  auto logs = qvm({"logs", "talk"});
  EXPECT_NE(logs.out.find(testing::kGuestReady), std::string::npos);
  EXPECT_NE(logs.out.find("hello-42"), std::string::npos) << logs.out;
  auto qemu_log = qvm({"logs", "--qemu", "talk"});
  EXPECT_EQ(qemu_log.exit_code, 0);
  ASSERT_EQ(qvm({"down", "talk"}).exit_code, 0);
  // `logs -f` of a stopped VM prints the log and returns instead of waiting forever.
  auto follow = qvm({"logs", "-f", "talk"}, 30s);
  EXPECT_EQ(follow.exit_code, 0);
  EXPECT_NE(follow.out.find("qvm-test-guest: power button"), std::string::npos);
  // Every line of the journal is JSON with a time and an event name, in order.
  auto events = qvm({"events", "talk"});
  std::vector<std::string> names;
  std::istringstream lines(events.out);
  for (std::string line; std::getline(lines, line);) {
    auto entry = nlohmann::json::parse(line);
    EXPECT_TRUE(entry.contains("time"));
    names.push_back(entry["event"]);
  }
  auto at = [&](const std::string& name) { return std::find(names.begin(), names.end(), name) - names.begin(); };
  EXPECT_LT(at("QVM_START"), at("QVM_READY"));
  EXPECT_LT(at("QVM_READY"), at("POWERDOWN"));
  EXPECT_LT(at("POWERDOWN"), at("SHUTDOWN"));
  EXPECT_LT(at("SHUTDOWN"), at("QVM_EXIT"));
  EXPECT_LT(at("QVM_EXIT"), static_cast<long>(names.size()));
}

TEST_F(LifecycleIntegrationTest, QmpPassthroughReportsQmpErrors) {
  QVM_REQUIRE_TEST_GUEST();
  ASSERT_EQ(qvm({"up", profile(testing::guest("raw").no_ready_wait()).string()}).exit_code, 0);
  auto block = qvm({"qmp", "raw", "query-name"});
  ASSERT_EQ(block.exit_code, 0) << block.err;
  EXPECT_EQ(nlohmann::json::parse(block.out)["name"], "raw");
  auto bad = qvm({"qmp", "raw", "no-such-command"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("CommandNotFound"), std::string::npos) << bad.err;
  auto args = qvm({"qmp", "raw", "query-status", "[1,2]"});
  EXPECT_EQ(args.exit_code, 2);
  EXPECT_NE(args.err.find("must be a JSON object"), std::string::npos) << args.err;
  ASSERT_EQ(qvm({"kill", "raw"}).exit_code, 0);
  auto stopped = qvm({"qmp", "raw", "query-status"});
  EXPECT_EQ(stopped.exit_code, 1);
  EXPECT_NE(stopped.err.find("\"raw\" is stopped"), std::string::npos) << stopped.err;
}

}  // namespace
}  // namespace qvm
