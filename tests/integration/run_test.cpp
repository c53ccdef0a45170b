// `qvm run` as a CI runner uses it: exit codes pass through, nothing is left behind, not
// even when qvm itself is killed, and the results come as JSON or JUnit.
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "host/host_info.hpp"
#include "store/layout.hpp"
#include "support/cli_runner.hpp"
#include "support/temp_dir.hpp"
#include "support/test_guest.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::CommandResult;

class RunIntegrationTest : public ::testing::Test {
 protected:
  CommandResult run(const std::vector<std::string>& args, std::chrono::seconds timeout = 240s) {
    std::vector<std::string> full = {"run", "--rm", "--accel", "tcg"};
    full.insert(full.end(), args.begin(), args.end());
    return testing::qvm(state_, full, timeout);
  }

  fs::path profile() {
    return testing::write_guest_profile(
        dir_, testing::guest("ci").no_ready_wait().toml("[[disk]]\npath = \"" + (dir_ / "base.qcow2").string() +
                                                        "\"\nsize = \"32MiB\"\n"));
  }

  // No VM folder, no runtime folder, no QEMU of ours.
  void expect_nothing_left() {
    std::error_code ec;
    EXPECT_TRUE(!fs::exists(state_ / "vms", ec) || fs::is_empty(state_ / "vms", ec))
        << "left in " << (state_ / "vms");
    auto ps = testing::run_command({"pgrep", "-f", "--", state_.string()});
    EXPECT_EQ(ps.out, "") << "processes left behind";
  }

  testing::TempDir dir_;
  fs::path state_ = dir_ / "state";
};

TEST_F(RunIntegrationTest, ExitCodesPassThroughAndNothingIsLeftBehind) {
  QVM_REQUIRE_TEST_GUEST();
  auto path = profile();
  auto ok = run({path.string(), "--", "sh", "-c", "echo building; echo warning >&2"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ok.out, "building\n");
  EXPECT_NE(ok.err.find("warning\n"), std::string::npos) << ok.err;
  for (int code : {1, 42}) {
    auto failed = run({path.string(), "--", "sh", "-c", "exit " + std::to_string(code)});
    EXPECT_EQ(failed.exit_code, code) << failed.err;
  }
  expect_nothing_left();
  // The profile's own disk was never created or written: the run used an overlay.
  EXPECT_FALSE(fs::exists(dir_ / "base.qcow2"));
}

TEST_F(RunIntegrationTest, JsonAndJunitResults) {
  QVM_REQUIRE_TEST_GUEST();
  auto result = run({"--json", "--junit", (dir_ / "report.xml").string(), profile().string(), "--", "sh", "-c",
                     "echo out; echo err >&2; exit 7"});
  EXPECT_EQ(result.exit_code, 7);
  auto json = nlohmann::json::parse(result.out);
  EXPECT_EQ(json["outcome"], "failed");
  EXPECT_EQ(json["exit_code"], 7);
  EXPECT_EQ(json["stdout"], "out\n");
  EXPECT_EQ(json["stderr"], "err\n");
  EXPECT_GT(json["boot_seconds"].get<double>(), 0.0);
  std::string xml = testing::read_file(dir_ / "report.xml");
  EXPECT_NE(xml.find("<testsuite name=\"qvm run ci-run-"), std::string::npos) << xml;
  EXPECT_NE(xml.find("failures=\"1\""), std::string::npos) << xml;
  EXPECT_NE(xml.find("<failure message=\"exit code 7\" type=\"failed\"/>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<system-out>out\n</system-out>"), std::string::npos) << xml;
  expect_nothing_left();
}

TEST_F(RunIntegrationTest, KillingQvmMidRunLeavesNoProcessSocketOrFile) {
  QVM_REQUIRE_TEST_GUEST();
  auto path = profile();
  std::vector<std::string> argv = {testing::qvm_binary().string(), "--state-dir", state_.string(),
                                   "run", "--rm", "--accel", "tcg", "--name", "doomed", path.string(),
                                   "--", "sh", "-c", "echo qvm-run-command-started >/dev/console; exec sleep 600"};
  bool command_started = false;
  auto killer = std::thread([&] {
    // Once the command runs inside the guest (it says so on the serial console), kill qvm
    // with SIGKILL: no chance to clean up.
    command_started = testing::eventually(
        [&] { return testing::count_in_file(state_ / "vms/doomed/serial.log", "qvm-run-command-started") > 0; },
        180s);
    // `run` supervises in its own process, so the supervisor pid is qvm's.
    auto status = nlohmann::json::parse(testing::qvm(state_, {"status", "doomed", "--json"}).out);
    ::kill(status["supervisor_pid"].get<int>(), SIGKILL);
  });
  auto result = testing::run_command(argv, {}, "", 240s);
  killer.join();
  EXPECT_TRUE(command_started) << "the command never ran in the guest: " << result.err;
  EXPECT_EQ(result.exit_code, -1) << "qvm was not killed: " << result.err;
  ASSERT_TRUE(testing::eventually(
      [&] { return testing::run_command({"pgrep", "-f", "--", state_.string()}).out.empty(); }, 20s))
      << "QEMU outlived qvm";
  ASSERT_TRUE(testing::eventually([&] { return !fs::exists(state_ / "vms" / "doomed"); }, 20s));
  const fs::path sockets = store::run_paths(state_, store::runtime_root(store::current_environment()), "doomed").runtime_dir;
  EXPECT_FALSE(fs::exists(sockets)) << "sockets left in " << sockets;
  expect_nothing_left();
}

TEST_F(RunIntegrationTest, BootTimeoutAndGuestPanicHaveTheirOwnCodes) {
  QVM_REQUIRE_TEST_GUEST();
  auto path = profile();
  auto slow = run({"--boot-timeout", "1", path.string(), "--", "true"});
  EXPECT_EQ(slow.exit_code, 124) << slow.err;
  EXPECT_NE(slow.err.find("not ready after 1 s"), std::string::npos) << slow.err;
  auto panic = run({path.string(), "--", "sh", "-c", "echo c > /proc/sysrq-trigger"});
  EXPECT_EQ(panic.exit_code, 123) << panic.err;
  EXPECT_NE(panic.err.find("guest panic"), std::string::npos) << panic.err;
  expect_nothing_left();
}

TEST_F(RunIntegrationTest, WithoutKvmRunRefusesUnlessTcgIsAskedFor) {
  QVM_REQUIRE_TEST_GUEST();
  const bool kvm = host::probe_kvm(host::real_kvm_system()).usable;
  auto result = testing::qvm(state_, {"run", "--rm", profile().string(), "--", "true"}, 240s);
  if (kvm) {
    EXPECT_EQ(result.exit_code, 0) << result.err;
  } else {
    EXPECT_EQ(result.exit_code, 125);
    EXPECT_NE(result.err.find("KVM is not usable"), std::string::npos) << result.err;
    EXPECT_NE(result.err.find("pass --accel tcg"), std::string::npos) << result.err;
  }
  expect_nothing_left();
}

}  // namespace
}  // namespace qvm
