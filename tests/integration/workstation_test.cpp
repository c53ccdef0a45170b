// Workstation features end to end on the real test guest (TCG), through the qvm binary:
// port forwarding, 9p shares, the cloud-init seed, UEFI, parallel `up` with --set, and
// how a broken bridge is reported.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "support/state_dir_test.hpp"
#include "support/cli_runner.hpp"
#include "support/guest_shell.hpp"
#include "support/temp_dir.hpp"
#include "support/test_guest.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::CommandResult;
using testing::TempDir;

constexpr const char* kKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKx1qvmTestKey me@laptop";
constexpr const char* kMount9p = "mount -t 9p -o trans=virtio,version=9p2000.L";

// A TCP port on 127.0.0.1 that nothing listens on right now.
std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("cannot find a free port");
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

// The body of GET / on 127.0.0.1:port with HTTP/1.0 (the server closes), or nullopt if the
// connection fails or the answer is not a 200.
std::optional<std::string> http_get(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    const std::string request = "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buffer[4096];
      for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;) {
        response.append(buffer, static_cast<std::size_t>(n));
      }
    }
  }
  ::close(fd);
  const std::size_t body = response.find("\r\n\r\n");
  if (!response.starts_with("HTTP/1.") || response.find(" 200 ") == std::string::npos ||
      body == std::string::npos) {
    return std::nullopt;
  }
  return response.substr(body + 4);
}

std::map<fs::path, std::string> file_contents(const fs::path& folder) {
  std::map<fs::path, std::string> contents;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    if (entry.is_regular_file()) contents[entry.path()] = testing::read_file(entry.path());
  }
  return contents;
}

class WorkstationIntegrationTest : public testing::StateDirTest {
 protected:
  // Every VM these tests ask about exists: a failed `status` is a failure of the test.
  nlohmann::json status(const std::string& name) {
    const CommandResult result = qvm({"status", name, "--json"});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return nlohmann::json::parse(result.out.empty() ? "{}" : result.out);
  }

  fs::path profile(const testing::GuestProfile& options) {
    return testing::write_guest_profile(dir_, options);
  }

  // Starts the guest with `sets` as --set overrides (top-level keys cannot follow the
  // tables of a guest profile); a failure stops the test with qvm's error.
  void up(const testing::GuestProfile& options, const std::vector<std::string>& sets = {}) {
    std::vector<std::string> args{"up", profile(options).string()};
    for (const std::string& set : sets) args.insert(args.end(), {"--set", set});
    auto result = qvm(args);
    if (result.exit_code != 0) {
      // What the guest printed tells a boot hang from a slow host.
      const std::string serial = qvm({"logs", options.name}).out;
      FAIL() << result.err << "serial console (last 3000 bytes):\n"
             << serial.substr(serial.size() > 3000 ? serial.size() - 3000 : 0);
    }
  }

  // Runs `command` in VM `name`'s serial shell; `exit_status` gets its status.
  std::string in_guest(const std::string& name, const std::string& command,
                       int* exit_status = nullptr) {
    const fs::path console = status(name)["sockets"].value("console", "");
    std::string output = testing::run_in_guest(console, command, 60s, exit_status);
    // The guest's tty turns "\n" into "\r\n".
    output.erase(std::remove(output.begin(), output.end(), '\r'), output.end());
    return output;
  }

  // The events of VM `name`'s journal called `event`, oldest first.
  std::vector<nlohmann::json> events(const std::string& name, const std::string& event) {
    std::vector<nlohmann::json> found;
    std::ifstream in(state_ / "vms" / name / "events.jsonl");
    for (std::string line; std::getline(in, line);) {
      auto entry = nlohmann::json::parse(line, nullptr, false);
      if (entry.is_object() && entry.value("event", "") == event) found.push_back(entry);
    }
    return found;
  }

  // The argv of VM `name`'s latest QEMU.
  std::vector<std::string> qemu_argv(const std::string& name) {
    auto starts = events(name, "QVM_START");
    if (starts.empty()) return {};
    return starts.back()["data"]["argv"].get<std::vector<std::string>>();
  }

};

TEST_F(WorkstationIntegrationTest, TcpForwardReachesAWebServerInTheGuest) {
  QVM_REQUIRE_TEST_GUEST();
  const std::uint16_t port = free_port();
  up(testing::guest("web").toml("[[net]]\nforward = [\"tcp:" + std::to_string(port) + ":8080\"]\n"));

  int exit_status = -1;
  const std::string output = in_guest(
      "web",
      "ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && "
      "ip route add default via 10.0.2.2 && mkdir -p /srv/www && "
      "echo 'served by the guest through hostfwd' > /srv/www/index.html && "
      "httpd -p 8080 -h /srv/www",
      &exit_status);
  ASSERT_EQ(exit_status, 0) << output;

  std::optional<std::string> body;
  EXPECT_TRUE(testing::eventually([&] { return (body = http_get(port)).has_value(); }, 20s))
      << "nothing answered on 127.0.0.1:" << port;
  EXPECT_EQ(body.value_or("(none)"), "served by the guest through hostfwd\n");
  // The rule listens on loopback only, as the profile documents.
  const auto argv = qemu_argv("web");
  EXPECT_NE(std::find(argv.begin(), argv.end(),
                      "user,id=net0,hostfwd=tcp:127.0.0.1:" + std::to_string(port) + "-:8080"),
            argv.end());
}

TEST_F(WorkstationIntegrationTest, SharesCarryFilesBothWaysAndReadonlyRefusesWrites) {
  QVM_REQUIRE_TEST_GUEST();
  const fs::path shared = dir_ / "shared folder";
  const fs::path docs = dir_ / "docs";
  fs::create_directories(shared);
  fs::create_directories(docs);
  dir_.write("shared folder/from-host.txt", "written on the host\n");
  dir_.write("docs/readme.txt", "read-only content\n");
  const auto before = file_contents(docs);
  up(testing::guest("share").toml("[[share]]\npath = \"" + shared.string() +
                                  "\"\ntag = \"work\"\n[[share]]\npath = \"" + docs.string() +
                                  "\"\nreadonly = true\n"));
  // QEMU runs with its seccomp sandbox, and 9p still works under it.
  const auto argv = qemu_argv("share");
  const auto sandbox = std::find(argv.begin(), argv.end(), "-sandbox");
  ASSERT_NE(sandbox, argv.end());
  EXPECT_TRUE((sandbox + 1)->starts_with("on,")) << *(sandbox + 1);

  int exit_status = -1;
  std::string output = in_guest("share",
                                "mkdir -p /mnt/work /mnt/docs && " + std::string(kMount9p) +
                                    " work /mnt/work && " + kMount9p + " docs /mnt/docs",
                                &exit_status);
  ASSERT_EQ(exit_status, 0) << output;
  EXPECT_EQ(in_guest("share", "cat /mnt/work/from-host.txt"), "written on the host\n");
  output = in_guest("share",
                    "echo 'written in the guest' > /mnt/work/from-guest.txt && "
                    "chmod 640 /mnt/work/from-guest.txt && mkdir /mnt/work/made-in-guest",
                    &exit_status);
  ASSERT_EQ(exit_status, 0) << output;
  EXPECT_EQ(testing::read_file(shared / "from-guest.txt"), "written in the guest\n");
  EXPECT_TRUE(fs::is_directory(shared / "made-in-guest"));
  // security_model=none: the host file has the guest's mode and this user's ownership.
  EXPECT_EQ(fs::status(shared / "from-guest.txt").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);

  EXPECT_EQ(in_guest("share", "cat /mnt/docs/readme.txt"), "read-only content\n");
  output = in_guest("share", "echo nope > /mnt/docs/new.txt", &exit_status);
  EXPECT_NE(exit_status, 0);
  EXPECT_NE(output.find("Read-only file system"), std::string::npos) << output;
  output = in_guest("share", "echo changed > /mnt/docs/readme.txt", &exit_status);
  EXPECT_NE(exit_status, 0) << output;
  output = in_guest("share", "rm /mnt/docs/readme.txt", &exit_status);
  EXPECT_NE(exit_status, 0) << output;
  EXPECT_EQ(file_contents(docs), before);
}

TEST_F(WorkstationIntegrationTest, GuestReadsTheCloudInitSeedFromItsCdRom) {
  QVM_REQUIRE_TEST_GUEST();
  up(testing::guest("seeded").toml(std::string("[cloud_init]\nhostname = \"box.example.org\"\n"
                                               "user = \"alice\"\nssh_authorized_keys = [\"") +
                                   kKey + "\"]\n"));
  const std::string uuid = status("seeded").value("uuid", "");
  ASSERT_FALSE(uuid.empty());
  const fs::path seed = state_ / "vms" / "seeded" / "cloud-init.iso";
  EXPECT_TRUE(fs::exists(seed));

  int exit_status = -1;
  const std::string output =
      in_guest("seeded", "mkdir -p /mnt/seed && mount -t iso9660 -o ro /dev/sr0 /mnt/seed && ls -1 /mnt/seed",
               &exit_status);
  ASSERT_EQ(exit_status, 0) << output;
  EXPECT_EQ(output, "meta-data\nuser-data\n");
  EXPECT_EQ(in_guest("seeded", "cat /mnt/seed/meta-data"),
            "instance-id: \"" + uuid + "\"\nlocal-hostname: \"box.example.org\"\n");
  const std::string user_data = in_guest("seeded", "cat /mnt/seed/user-data");
  EXPECT_TRUE(user_data.starts_with("#cloud-config\n")) << user_data;
  EXPECT_NE(user_data.find("  - name: \"alice\"\n"), std::string::npos) << user_data;
  EXPECT_NE(user_data.find(std::string("      - \"") + kKey + "\"\n"), std::string::npos)
      << user_data;
  // The CD-ROM is read-only for the guest.
  in_guest("seeded", "echo x > /mnt/seed/new", &exit_status);
  EXPECT_NE(exit_status, 0);
}

TEST_F(WorkstationIntegrationTest, MicrovmGetsTheSeedAndSharesOverVirtioMmio) {
  QVM_REQUIRE_TEST_GUEST();
  const fs::path shared = dir_ / "micro-share";
  fs::create_directories(shared);
  // microvm has neither HPET nor an ACPI PM timer: when the PIT calibration of the TSC fails
  // (it does under TCG on a busy host), the kernel hangs waiting for its first tick. A
  // stated TSC rate skips the calibration; the value only needs to be plausible.
  up(testing::guest("micro").cmdline("tsc_early_khz=2000000").toml("[cloud_init]\nuser_data = \"" +
                                  dir_.write("user-data.yaml", "#cloud-config\nruncmd: [true]\n")
                                      .string() +
                                  "\"\n[[share]]\npath = \"" + shared.string() + "\"\n"),
     {"machine=microvm"});
  int exit_status = -1;
  const std::string output = in_guest(
      "micro",
      "mkdir -p /mnt/seed /mnt/share && mount -t iso9660 -o ro /dev/vda /mnt/seed && " +
          std::string(kMount9p) + " micro-share /mnt/share && echo hi > /mnt/share/hi.txt",
      &exit_status);
  ASSERT_EQ(exit_status, 0) << output;
  EXPECT_EQ(in_guest("micro", "cat /mnt/seed/user-data"), "#cloud-config\nruncmd: [true]\n");
  EXPECT_NE(in_guest("micro", "cat /mnt/seed/meta-data").find("local-hostname: \"micro\"\n"),
            std::string::npos);
  EXPECT_EQ(testing::read_file(shared / "hi.txt"), "hi\n");
}

TEST_F(WorkstationIntegrationTest, UefiBootsTheKernelWithAPrivateVarStore) {
  QVM_REQUIRE_TEST_GUEST();
  // Every variable-store template on the host, to prove none of them is written to.
  std::map<fs::path, std::string> templates;
  for (const fs::path folder : {"/usr/share/OVMF", "/usr/share/qemu"}) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(folder, ec)) {
      const std::string file = entry.path().filename().string();
      if (file.find("VARS") != std::string::npos && entry.is_regular_file()) {
        templates[entry.path()] = testing::read_file(entry.path());
      }
    }
  }
  ASSERT_FALSE(templates.empty()) << "no OVMF_VARS template; install the ovmf package";

  up(testing::guest("efi"), {"firmware=uefi"});
  EXPECT_EQ(testing::count_in_file(state_ / "vms" / "efi" / "serial.log", testing::kGuestReady), 1);
  const fs::path vars = state_ / "vms" / "efi" / "uefi-vars.fd";
  ASSERT_TRUE(fs::exists(vars));
  const auto argv = qemu_argv("efi");
  EXPECT_NE(std::find_if(argv.begin(), argv.end(),
                         [&](const std::string& word) {
                           return word.find("filename=" + vars.string()) != std::string::npos;
                         }),
            argv.end());
  EXPECT_EQ(in_guest("efi", "[ -d /sys/firmware/efi ] && echo efi || echo bios"), "efi\n");

  auto down = qvm({"down", "efi"});
  ASSERT_EQ(down.exit_code, 0) << down.err;
  EXPECT_NE(down.out.find("ACPI power button"), std::string::npos) << down.out;
  EXPECT_EQ(status("efi").value("state", ""), "stopped");
  EXPECT_TRUE(fs::exists(vars));
  bool same_size_as_a_template = false;
  for (const auto& [path, content] : templates) {
    EXPECT_EQ(testing::read_file(path), content) << path << " was modified";
    same_size_as_a_template = same_size_as_a_template || content.size() == fs::file_size(vars);
  }
  EXPECT_TRUE(same_size_as_a_template);
}

TEST_F(WorkstationIntegrationTest, ThreeProfilesStartInParallelWithOverrides) {
  QVM_REQUIRE_TEST_GUEST();
  std::vector<std::string> args{"up"};
  const std::vector<std::string> names{"par-a", "par-b", "par-c"};
  for (const std::string& name : names) args.push_back(profile(testing::guest(name)).string());
  args.insert(args.end(), {"--set", "memory=320MiB", "--set",
                           "qemu.extra_args=[\"-device\", \"virtio-rng-pci,id=extra-rng\"]"});
  auto result = qvm(args);
  ASSERT_EQ(result.exit_code, 0) << result.err;

  std::set<int> pids;
  std::string last_start;
  std::string first_ready = "9999";
  for (const std::string& name : names) {
    EXPECT_NE(result.out.find(name + ": running (QEMU pid "), std::string::npos) << result.out;
    nlohmann::json s = status(name);
    EXPECT_EQ(s.value("state", ""), "running");
    EXPECT_EQ(s.value("memory_mib", 0), 320);
    if (s["pid"].is_number()) pids.insert(s["pid"].get<int>());

    auto memory = qvm({"qmp", name, "query-memory-size-summary"});
    ASSERT_EQ(memory.exit_code, 0) << memory.err;
    EXPECT_EQ(nlohmann::json::parse(memory.out).value("base-memory", 0ull), 320ull << 20);
    auto devices = qvm({"qmp", name, "qom-list", R"({"path": "/machine/peripheral"})"});
    ASSERT_EQ(devices.exit_code, 0) << devices.err;
    EXPECT_NE(devices.out.find("\"extra-rng\""), std::string::npos) << devices.out;

    const auto starts = events(name, "QVM_START");
    const auto readies = events(name, "QVM_READY");
    ASSERT_EQ(starts.size(), 1u);
    ASSERT_EQ(readies.size(), 1u);
    last_start = std::max(last_start, starts[0].value("time", ""));
    first_ready = std::min(first_ready, readies[0].value("time", ""));
  }
  EXPECT_EQ(pids.size(), 3u);
  // In parallel: every QEMU was started before the first guest was ready.
  EXPECT_LT(last_start, first_ready);
}

TEST_F(WorkstationIntegrationTest, MissingBridgeFailsUpWithQemusMessage) {
  QVM_REQUIRE_TEST_GUEST();
  auto result = qvm({"up", profile(testing::guest("bridged").toml(
                               "[[net]]\nmode = \"bridge\"\nbridge = \"qvmnobr0\"\n"))
                               .string()});
  EXPECT_EQ(result.exit_code, 1) << result.out;
  EXPECT_NE(result.err.find("qvm: error: bridged: QEMU exited with code 1 during start"),
            std::string::npos)
      << result.err;
  // QEMU's own words, naming the option it choked on.
  EXPECT_NE(result.err.find("-netdev bridge,id=net0,br=qvmnobr0: bridge helper failed"),
            std::string::npos)
      << result.err;
  nlohmann::json s = status("bridged");
  EXPECT_EQ(s.value("state", ""), "crashed");
  EXPECT_EQ(s.value("reason_code", ""), "start-failed");
}

TEST_F(WorkstationIntegrationTest, SshGoesToTheForwardedPortWithAPerVmKnownHostsFile) {
  QVM_REQUIRE_TEST_GUEST();
  const std::uint16_t port = free_port();
  up(testing::guest("sshable").toml("[[net]]\nforward = [\"udp:5353:22\", \"tcp:" + std::to_string(port) +
                                    ":22\"]\n[cloud_init]\nuser = \"dev\"\n"));
  // An ssh that records what it was given: qvm replaces itself with it, so its exit code
  // is the command's.
  const fs::path bin = dir_ / "bin";
  dir_.write("bin/ssh", "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"" + (dir_ / "ssh-args").string() + "\"\nexit 7\n",
             fs::perms::owner_all);
  const std::map<std::string, std::string> env{
      {"PATH", bin.string() + ":" + std::string(std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin")}};
  const auto run = [&](const std::vector<std::string>& args) {
    std::vector<std::string> argv{testing::qvm_binary().string(), "--state-dir", state_.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::run_command(argv, env);
  };
  CommandResult ssh = run({"ssh", "sshable", "--", "uname", "-a"});
  EXPECT_EQ(ssh.exit_code, 7) << ssh.err;
  const std::string state_dir = status("sshable").value("state_dir", "");
  EXPECT_EQ(testing::read_file(dir_ / "ssh-args"),
            "-p\n" + std::to_string(port) + "\n-o\nHostKeyAlias=qvm-sshable\n-o\nUserKnownHostsFile=" +
                state_dir + "/known_hosts\n-o\nStrictHostKeyChecking=accept-new\ndev@127.0.0.1\nuname\n-a\n");

  ASSERT_EQ(qvm({"down", "sshable"}).exit_code, 0);
  ssh = run({"ssh", "sshable"});
  EXPECT_EQ(ssh.exit_code, 1);
  EXPECT_EQ(ssh.err, "qvm: error: VM \"sshable\" is stopped; start it first (qvm start sshable)\n");
}

}  // namespace
}  // namespace qvm
