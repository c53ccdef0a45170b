// The guest agent client against the real qemu-ga in the test guest, booted by the qvm binary
// under TCG with `agent = true`.
#include "qvm/agent.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/cli_runner.hpp"
#include "support/temp_dir.hpp"
#include "support/test_guest.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::CommandResult;
using ::testing::HasSubstr;
using testing::TempDir;
using Clock = std::chrono::steady_clock;

// Long enough for a loaded CI machine running TCG; a healthy guest answers in milliseconds.
constexpr auto kAnswer = std::chrono::milliseconds(30s);

// One state directory of VMs started through the CLI, all killed at the end.
class AgentVms {
 public:
  ~AgentVms() {
    testing::kill_all_vms(state_);
  }

  CommandResult qvm(const std::vector<std::string>& args) {
    return testing::qvm(state_, args, 240s);
  }

  // Starts the test guest with its agent channel; returns the agent socket ("" on failure,
  // after reporting it).
  fs::path up(const std::string& name, const std::string& cmdline = "") {
    const fs::path profile =
        testing::write_guest_profile(dir_, testing::guest(name).cmdline(cmdline));
    const CommandResult started = qvm({"up", profile.string(), "--set", "agent=true"});
    EXPECT_EQ(started.exit_code, 0) << started.out << started.err;
    if (started.exit_code != 0) return {};
    return fs::path(status(name)["sockets"]["agent"].get<std::string>());
  }

  nlohmann::json status(const std::string& name) {
    const CommandResult result = qvm({"status", name, "--json"});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return nlohmann::json::parse(result.out.empty() ? "{}" : result.out);
  }

  fs::path serial_log(const std::string& name) const {
    return state_ / "vms" / name / "serial.log";
  }

 private:
  TempDir dir_;
  fs::path state_ = dir_ / "state";
};

// Most checks share one guest: a boot under TCG costs several seconds.
class AgentIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::guest_available()) return;
    vms_ = new AgentVms();
    socket_ = new fs::path(vms_->up("agent-shared"));
  }

  static void TearDownTestSuite() {
    delete socket_;
    delete vms_;
    socket_ = nullptr;
    vms_ = nullptr;
  }

  void SetUp() override {
    QVM_REQUIRE_TEST_GUEST();
    ASSERT_FALSE(socket_->empty()) << "the shared guest did not start";
  }

  static AgentVms* vms_;
  static fs::path* socket_;
};

AgentVms* AgentIntegrationTest::vms_ = nullptr;
fs::path* AgentIntegrationTest::socket_ = nullptr;

TEST_F(AgentIntegrationTest, PingAndInfoAnswer) {
  AgentClient agent(*socket_, kAnswer);
  agent.ping(kAnswer);
  const nlohmann::json info = agent.info(kAnswer);
  EXPECT_THAT(info["version"].get<std::string>(), ::testing::StartsWith("7."));
  std::vector<std::string> commands;
  for (const auto& command : info["supported_commands"]) commands.push_back(command["name"]);
  EXPECT_THAT(commands, ::testing::IsSupersetOf({"guest-exec", "guest-exec-status",
                                                 "guest-file-open", "guest-file-read",
                                                 "guest-shutdown", "guest-sync-delimited"}));
}

TEST_F(AgentIntegrationTest, ExecReturnsOutputAndExitCodes) {
  AgentClient agent(*socket_, kAnswer);
  AgentExecOptions options;
  options.timeout = 60s;
  const AgentExecResult hello = agent.exec({"echo", "hello"}, options);
  EXPECT_EQ(hello.out, "hello\n");
  EXPECT_EQ(hello.err, "");
  EXPECT_EQ(hello.exit_code, 0);
  EXPECT_EQ(hello.signal, std::nullopt);

  const AgentExecResult one = agent.exec({"sh", "-c", "echo to stderr >&2; exit 1"}, options);
  EXPECT_EQ(one.exit_code, 1);
  EXPECT_EQ(one.out, "");
  EXPECT_EQ(one.err, "to stderr\n");
  EXPECT_EQ(agent.exec({"sh", "-c", "exit 42"}, options).exit_code, 42);

  options.input = "from the host\n";
  EXPECT_EQ(agent.exec({"cat"}, options).out, "from the host\n");
}

TEST_F(AgentIntegrationTest, ExecOfAMissingProgramIsAnAgentError) {
  AgentClient agent(*socket_, kAnswer);
  try {
    agent.exec({"/no/such/program"});
    FAIL() << "expected AgentError";
  } catch (const AgentError& e) {
    EXPECT_THAT(e.desc(), HasSubstr("/no/such/program"));
  }
  agent.ping(kAnswer);
}

TEST_F(AgentIntegrationTest, StreamingExecDeliversOutputWhileTheCommandRuns) {
  AgentClient agent(*socket_, kAnswer);
  std::string out, err;
  std::optional<Clock::time_point> saw_a, saw_b;
  const int code = agent.exec_streaming(
      {"/bin/sh", "-c", "echo a; sleep 2; echo b; echo oops >&2; exit 42"},
      [&](std::string_view chunk) {
        out += chunk;
        if (!saw_a && out.find("a\n") != std::string::npos) saw_a = Clock::now();
        if (!saw_b && out.find("b\n") != std::string::npos) saw_b = Clock::now();
      },
      [&](std::string_view chunk) { err += chunk; }, 60s);
  EXPECT_EQ(code, 42);
  EXPECT_EQ(out, "a\nb\n");
  EXPECT_EQ(err, "oops\n");
  ASSERT_TRUE(saw_a && saw_b);
  EXPECT_GE(*saw_b - *saw_a, 1500ms) << "\"a\" arrived only with \"b\", at the end";

  // Quoting survives the trip through the guest's shell, and nothing is left in /tmp.
  std::string echoed;
  EXPECT_EQ(agent.exec_streaming(
                {"printf", "%s|", "it's", "a  b", "$(id)", ""},
                [&](std::string_view chunk) { echoed += chunk; }, nullptr, 60s),
            0);
  EXPECT_EQ(echoed, "it's|a  b|$(id)||");
  const AgentExecResult left = agent.exec({"sh", "-c", "ls /tmp | grep -c qvm-exec || true"});
  EXPECT_EQ(left.out, "0\n");
  EXPECT_EQ(agent.exec_streaming({"no-such-command"}, nullptr, nullptr, 60s), 127);
}

TEST_F(AgentIntegrationTest, ShutdownRebootBootsTheGuestAgain) {
  AgentVms vms;
  const fs::path socket = vms.up("agent-reboot");
  ASSERT_FALSE(socket.empty());
  AgentClient agent(socket, kAnswer);
  agent.shutdown(AgentShutdownMode::reboot, 3s);
  EXPECT_TRUE(testing::eventually(
      [&] {
        return testing::count_in_file(vms.serial_log("agent-reboot"), testing::kGuestReady) == 2;
      },
      120s))
      << "no second boot on the serial console";
  EXPECT_EQ(testing::count_in_file(vms.serial_log("agent-reboot"),
                                   "qvm-test-guest: shutdown: reboot (shutdown -h -r +0"),
            1);
  // The same connection talks to the new agent once it resynchronises.
  agent.ping(kAnswer);
  EXPECT_EQ(vms.status("agent-reboot")["state"], "running");
}

TEST_F(AgentIntegrationTest, ShutdownPowerdownMakesQemuExit) {
  AgentVms vms;
  const fs::path socket = vms.up("agent-powerdown");
  ASSERT_FALSE(socket.empty());
  AgentClient agent(socket, kAnswer);
  agent.shutdown(AgentShutdownMode::powerdown, 10s);
  EXPECT_TRUE(testing::eventually(
      [&] { return vms.status("agent-powerdown").value("state", "") == "stopped"; }, 60s));
  const nlohmann::json status = vms.status("agent-powerdown");
  EXPECT_EQ(status["reason_code"], "guest-shutdown") << status.dump();
  EXPECT_THROW(agent.ping(1s), AgentDisconnected);
}

TEST_F(AgentIntegrationTest, GuestWithTheAgentOffNeverAnswers) {
  AgentVms vms;
  const fs::path socket = vms.up("agent-off", "qvm.agent=off");
  ASSERT_FALSE(socket.empty());
  const auto start = Clock::now();
  EXPECT_THROW(AgentClient(socket, 2s), AgentTimeout);
  EXPECT_LT(Clock::now() - start, 5s);
}

}  // namespace
}  // namespace qvm
