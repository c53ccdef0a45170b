// What qvm promises about privileges: as root, [qemu] user makes QEMU drop to that user
// (-runas) under a sandbox that allows it exactly that; as an ordinary user it refuses
// before anything starts.
#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "support/cli_runner.hpp"
#include "support/temp_dir.hpp"
#include "support/test_guest.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::CommandResult;

// The real uid of process `pid`, from /proc/PID/status ("Uid:\treal\teffective\t...").
long uid_of(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("Uid:")) return std::stol(line.substr(4));
  }
  return -1;
}

class SecurityIntegrationTest : public ::testing::Test {
 protected:
  void TearDown() override { qvm({"kill", "dropped"}); }

  CommandResult qvm(const std::vector<std::string>& args) { return testing::qvm(state_, args, 240s); }

  testing::TempDir dir_;
  fs::path state_ = dir_ / "state";
};

TEST_F(SecurityIntegrationTest, QemuRunsAsTheProfilesUserAndStaysManageable) {
  QVM_REQUIRE_TEST_GUEST();
  if (::geteuid() != 0) GTEST_SKIP() << "-runas needs qvm to run as root; this test runs as uid " << ::geteuid();
  const struct passwd* nobody = ::getpwnam("nobody");
  ASSERT_NE(nobody, nullptr) << "Debian always has the user nobody";

  const fs::path profile = testing::write_guest_profile(
      dir_, testing::guest("dropped").toml("[qemu]\nuser = \"nobody\"\n"));
  CommandResult up = qvm({"up", profile.string()});
  ASSERT_EQ(up.exit_code, 0) << up.err;

  const auto status = nlohmann::json::parse(qvm({"status", "dropped", "--json"}).out);
  ASSERT_EQ(status.value("state", ""), "running") << status.dump();
  const int pid = status["pid"].get<int>();
  EXPECT_EQ(uid_of(pid), static_cast<long>(nobody->pw_uid));
  // The supervisor stays root's, and its monitor still answers.
  EXPECT_EQ(uid_of(status["supervisor_pid"].get<int>()), 0);
  CommandResult qmp = qvm({"qmp", "dropped", "query-status"});
  EXPECT_EQ(qmp.exit_code, 0) << qmp.err;
  EXPECT_NE(qmp.out.find("\"running\""), std::string::npos) << qmp.out;

  // A live snapshot would need QEMU to write into root's private VM folder: refused up front.
  CommandResult snap = qvm({"snapshot", "create", "dropped", "live"});
  EXPECT_EQ(snap.exit_code, 1);
  EXPECT_NE(snap.err.find("runs QEMU as \"nobody\" ([qemu] user)"), std::string::npos) << snap.err;
  EXPECT_EQ(qvm({"snapshot", "ls", "dropped"}).out, "no snapshots\n");

  CommandResult down = qvm({"down", "dropped"});
  EXPECT_EQ(down.exit_code, 0) << down.err;
  EXPECT_EQ(nlohmann::json::parse(qvm({"status", "dropped", "--json"}).out).value("state", ""), "stopped");
  EXPECT_EQ(::kill(pid, 0), -1);
}

TEST_F(SecurityIntegrationTest, AnUnknownUserStartsNothing) {
  QVM_REQUIRE_TEST_GUEST();
  const fs::path profile = testing::write_guest_profile(
      dir_, testing::guest("dropped").toml("[qemu]\nuser = \"qvm-no-such-user\"\n"));
  CommandResult up = qvm({"up", profile.string()});
  EXPECT_EQ(up.exit_code, 1);
  if (::geteuid() == 0) {
    EXPECT_NE(up.err.find("qemu.user = \"qvm-no-such-user\": no such user on this host"), std::string::npos)
        << up.err;
  } else {
    EXPECT_NE(up.err.find("needs qvm to run as root"), std::string::npos) << up.err;
  }
  const auto status = nlohmann::json::parse(qvm({"status", "dropped", "--json"}).out);
  EXPECT_NE(status.value("state", ""), "running") << status.dump();
  EXPECT_TRUE(status["pid"].is_null()) << status.dump();
}

}  // namespace
}  // namespace qvm
