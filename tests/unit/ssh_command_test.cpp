#include "cli/ssh_command.hpp"

#include <gtest/gtest.h>

#include "qvm/error.hpp"

namespace qvm::cli {
namespace {

Profile profile(const std::string& toml) { return parse_profile(toml, "/vm/dev.toml"); }

SshRequest request() {
  SshRequest r;
  r.vm = "dev";
  r.state_dir = "/state/vms/dev";
  r.local_user = "me";
  return r;
}

const std::vector<std::string> kCommon = {
    "-o", "HostKeyAlias=qvm-dev", "-o", "UserKnownHostsFile=/state/vms/dev/known_hosts",
    "-o", "StrictHostKeyChecking=accept-new"};

std::vector<std::string> expected(const std::string& port, std::vector<std::string> tail) {
  std::vector<std::string> argv{"ssh", "-p", port};
  argv.insert(argv.end(), kCommon.begin(), kCommon.end());
  argv.insert(argv.end(), tail.begin(), tail.end());
  return argv;
}

TEST(SshCommandTest, UsesTheTcpForwardToPort22AndYourName) {
  const Profile p = profile("[[net]]\nforward = [\"udp:5000:22\", \"8080:80\", \"tcp:2222:22\"]\n");
  EXPECT_EQ(ssh_argv(p, request()), expected("2222", {"me@127.0.0.1"}));
}

TEST(SshCommandTest, CloudInitUserThenExplicitUserAndKey) {
  const Profile p = profile("[[net]]\nforward = [\"0.0.0.0:2200:22\"]\n[cloud_init]\nuser = \"dev\"\n");
  EXPECT_EQ(ssh_argv(p, request()), expected("2200", {"dev@127.0.0.1"}));
  SshRequest r = request();
  r.user = "root";
  r.identity = "/home/me/.ssh/id_vm";
  r.extra = {"-A", "make", "test"};
  EXPECT_EQ(ssh_argv(p, r), expected("2200", {"-i", "/home/me/.ssh/id_vm", "-o", "IdentitiesOnly=yes",
                                              "root@127.0.0.1", "-A", "make", "test"}));
}

TEST(SshCommandTest, ABoundAddressIsUsed) {
  const Profile p = profile("[[net]]\nforward = [\"tcp:127.0.0.2:2022:22\"]\n");
  EXPECT_EQ(ssh_argv(p, request()).at(9), "me@127.0.0.2");
}

TEST(SshCommandTest, NoForwardToPort22SaysHowToAddOne) {
  for (const char* toml : {"", "[[net]]\nforward = [\"udp:2222:22\"]\n", "[[net]]\nmode = \"none\"\n"}) {
    SCOPED_TRACE(toml);
    try {
      ssh_argv(profile(toml), request());
      FAIL() << "expected UsageError";
    } catch (const UsageError& e) {
      EXPECT_STREQ(e.what(),
                   "VM \"dev\" forwards no host port to guest port 22; add forward = [\"tcp:2222:22\"] "
                   "to a user-mode [[net]] of its profile");
    }
  }
}

}  // namespace
}  // namespace qvm::cli
