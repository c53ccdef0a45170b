// What qvm promises about privileges: as root, [qemu] user makes QEMU drop to that user
// (-runas) under a sandbox that allows it exactly that; as an ordinary user it refuses
// before anything starts.
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
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

TEST_F(SecurityIntegrationTest, AnOrdinaryUserRunsTheWholeLifecycle) {
  QVM_REQUIRE_TEST_GUEST();
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user; this test runs as uid " << ::geteuid();
  const struct passwd* nobody = ::getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  // A folder of nobody's own, outside the root-only test folder.
  std::string pattern = "/tmp/qvm-user-test.XXXXXX";
  ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
  const fs::path home = pattern;
  ASSERT_EQ(::chown(home.c_str(), nobody->pw_uid, nobody->pw_gid), 0);
  struct Cleanup {
    fs::path path;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  } cleanup{home};
  testing::GuestProfile options = testing::guest("mine");
  const fs::path written = testing::write_guest_profile(dir_, options);
  const fs::path profile = home / "mine.toml";
  fs::copy_file(written, profile);
  ASSERT_EQ(::chown(profile.c_str(), nobody->pw_uid, nobody->pw_gid), 0);

  const std::string uid = std::to_string(nobody->pw_uid);
  const std::string gid = std::to_string(nobody->pw_gid);
  const auto as_nobody = [&](const std::vector<std::string>& args) {
    std::vector<std::string> argv{"setpriv", "--reuid=" + uid, "--regid=" + gid, "--clear-groups", "--",
                                  testing::qvm_binary().string(), "--state-dir", (home / "state").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::run_command(argv, {{"HOME", home.string()}, {"XDG_RUNTIME_DIR", ""}}, "", 240s);
  };
  CommandResult up = as_nobody({"up", profile.string()});
  ASSERT_EQ(up.exit_code, 0) << up.err;
  const auto status = nlohmann::json::parse(as_nobody({"status", "mine", "--json"}).out);
  ASSERT_EQ(status.value("state", ""), "running") << status.dump();
  EXPECT_EQ(uid_of(status["pid"].get<int>()), static_cast<long>(nobody->pw_uid));
  EXPECT_EQ(uid_of(status["supervisor_pid"].get<int>()), static_cast<long>(nobody->pw_uid));
  EXPECT_EQ(as_nobody({"pause", "mine"}).exit_code, 0);
  EXPECT_EQ(as_nobody({"resume", "mine"}).exit_code, 0);
  CommandResult down = as_nobody({"down", "mine"});
  EXPECT_EQ(down.exit_code, 0) << down.err;
  EXPECT_NE(down.out.find("ACPI power button"), std::string::npos) << down.out;
  // Everything it made belongs to nobody and is private.
  struct stat st {};
  ASSERT_EQ(::stat((home / "state" / "vms" / "mine" / "state.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, nobody->pw_uid);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(as_nobody({"rm", "mine"}).exit_code, 0);
}

}  // namespace
}  // namespace qvm
