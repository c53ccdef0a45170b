// `qvm exec`, `[ready] agent`, and the agent steps of `reboot` and `down`, through the qvm
// binary and the real test guest's qemu-ga.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/cli_runner.hpp"
#include "support/temp_dir.hpp"
#include "support/test_guest.hpp"

namespace qvm {
namespace {

using namespace std::chrono_literals;
using testing::CommandResult;

class ExecIntegrationTest : public ::testing::Test {
 protected:
  void TearDown() override { qvm({"kill", "agent"}); }
  CommandResult qvm(const std::vector<std::string>& args) { return testing::qvm(dir_ / "state", args, 240s); }
  nlohmann::json status() { return nlohmann::json::parse(qvm({"status", "agent", "--json"}).out); }

  testing::TempDir dir_;
};

TEST_F(ExecIntegrationTest, ExecRebootAndDownGoThroughTheGuestAgent) {
  QVM_REQUIRE_TEST_GUEST();
  // Ready means the agent answers, not only the serial line.
  auto profile = testing::write_guest_profile(
      dir_, testing::guest("agent").top("agent = true").no_ready_wait().toml("[ready]\nagent = true\ntimeout = 180\n"));
  auto up = qvm({"up", profile.string()});
  ASSERT_EQ(up.exit_code, 0) << up.err;
  EXPECT_NE(qvm({"events", "agent"}).out.find("QVM_READY_AGENT"), std::string::npos);

  auto hello = qvm({"exec", "agent", "--", "echo", "hello from the guest"});
  EXPECT_EQ(hello.exit_code, 0) << hello.err;
  EXPECT_EQ(hello.out, "hello from the guest\n");
  EXPECT_EQ(qvm({"exec", "agent", "--", "false"}).exit_code, 1);
  auto code = qvm({"exec", "agent", "--", "sh", "-c", "echo out; echo err >&2; exit 42"});
  EXPECT_EQ(code.exit_code, 42);
  EXPECT_EQ(code.out, "out\n");
  EXPECT_EQ(code.err, "err\n");
  auto missing = qvm({"exec", "agent", "--", "no-such-program"});
  EXPECT_EQ(missing.exit_code, 127);

  auto reboot = qvm({"reboot", "agent"});
  ASSERT_EQ(reboot.exit_code, 0) << reboot.err;
  EXPECT_EQ(reboot.out, "agent: rebooting (asked the guest agent)\n");
  EXPECT_TRUE(testing::eventually(
      [&] { return testing::count_in_file(dir_ / "state/vms/agent/serial.log", testing::kGuestReady) == 2; }, 120s));

  // Exec needs the agent back after the reboot; it restarts with the guest.
  EXPECT_TRUE(testing::eventually([&] { return qvm({"exec", "agent", "--", "true"}).exit_code == 0; }, 60s));
  auto down = qvm({"down", "agent"});
  ASSERT_EQ(down.exit_code, 0) << down.err;
  EXPECT_NE(down.out.find("the guest agent shut the guest down"), std::string::npos) << down.out;
  nlohmann::json s = status();
  EXPECT_EQ(s["state"], "stopped");
  EXPECT_EQ(s["last_down_step"], "agent");
  EXPECT_EQ(s["reason"], "host request");

  auto stopped = qvm({"exec", "agent", "--", "true"});
  EXPECT_EQ(stopped.exit_code, 125);
  EXPECT_NE(stopped.err.find("\"agent\" is stopped"), std::string::npos) << stopped.err;
}

TEST_F(ExecIntegrationTest, ExecWithoutAnAgentChannelSaysHowToGetOne) {
  QVM_REQUIRE_TEST_GUEST();
  ASSERT_EQ(qvm({"up", testing::write_guest_profile(dir_, testing::guest("agent").no_ready_wait()).string()}).exit_code, 0);
  auto exec = qvm({"exec", "agent", "--", "true"});
  EXPECT_EQ(exec.exit_code, 125);
  EXPECT_NE(exec.err.find("has no guest agent channel; set agent = true"), std::string::npos) << exec.err;
  auto reboot = qvm({"reboot", "agent"});
  EXPECT_EQ(reboot.out, "agent: rebooting (hardware reset: no guest agent answered)\n");
}

}  // namespace
}  // namespace qvm
