// The foundation, proven on real QEMU: the argv qvm builds boots the test guest, and the
// command `qvm up --dry-run` prints for every bundled profile is one QEMU accepts.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "command_line/command_line.hpp"
#include "process/child.hpp"
#include "process/run_program.hpp"
#include "qvm/qmp.hpp"
#include "store/files.hpp"
#include "support/cli_runner.hpp"
#include "support/temp_dir.hpp"
#include "support/test_guest.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::TempDir;

host::HostInfo real_host(const Profile& profile) {
  return host::probe_host(profile.qemu.binary,
                          {profile.accel != Accel::tcg, profile.firmware == Firmware::uefi},
                          [](const auto& argv) { return process::run_program(argv); });
}

// Kills QEMU if a test fails half-way, so no guest outlives its test.
struct QemuGuard {
  process::Process& qemu;
  ~QemuGuard() {
    if (!qemu.poll()) {
      qemu.send_signal(SIGKILL);
      qemu.wait(5000);
    }
  }
};

TEST(BootIntegrationTest, BuiltArgvBootsTheGuestAndPowersOffOnTheAcpiButton) {
  QVM_REQUIRE_TEST_GUEST();
  TempDir dir;
  testing::GuestProfile options;
  options.name = "boot";
  Profile profile = load_profile(testing::write_guest_profile(dir, options));
  RunPaths paths{dir / "state", dir / "run"};
  fs::create_directories(paths.state_dir);
  fs::create_directories(paths.runtime_dir);
  CommandLine command = build_command_line(profile, real_host(profile), paths,
                                           "11111111-2222-8333-8444-555555555555");
  EXPECT_EQ(command.accel, Accel::tcg);

  process::Process qemu = process::Process::spawn({command.argv, paths.qemu_log(), true, {}});
  QemuGuard guard{qemu};
  // QEMU was started with -S: connect, then let the CPUs run.
  ASSERT_TRUE(testing::eventually([&] { return fs::exists(paths.supervisor_qmp()); }, 10s))
      << store::read_file_if_exists(paths.qemu_log()).value_or("");
  QmpSession qmp(paths.supervisor_qmp(), 10s);
  EXPECT_EQ(qmp.execute("query-status")["status"], "prelaunch");
  qmp.execute("cont");

  ASSERT_TRUE(testing::eventually(
      [&] { return testing::count_in_file(paths.serial_log(), testing::kGuestReady) == 1; }, 120s))
      << "serial log:\n" << store::read_file_if_exists(paths.serial_log()).value_or("(none)");

  qmp.execute("system_powerdown");
  auto exit = qemu.wait(60000);
  ASSERT_TRUE(exit) << "QEMU still running 60 s after the power button";
  EXPECT_TRUE(exit->success()) << exit->describe();
  EXPECT_EQ(testing::count_in_file(paths.serial_log(), "qvm-test-guest: power button"), 1);
  auto shutdown = qmp.wait_event("SHUTDOWN", 5s);
  ASSERT_TRUE(shutdown);
  EXPECT_EQ(shutdown->data["reason"], "guest-shutdown");
}

// `qvm up --dry-run --json` of each bundled profile, run for real with -S and quit over QMP.
TEST(BootIntegrationTest, EveryBundledProfileDryRunIsAcceptedByQemu) {
  QVM_REQUIRE_TEST_GUEST();
  const fs::path profiles_dir = fs::path(QVM_SOURCE_DIR) / "profiles";
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(profiles_dir)) {
    if (entry.path().extension() != ".toml") continue;
    SCOPED_TRACE(entry.path().string());
    TempDir dir;
    // The profiles' own disks would land in the source tree; put them in a scratch folder.
    Profile profile = load_profile(entry.path());
    std::vector<std::string> args = {"up", "--dry-run", "--json", "--set", "accel=tcg"};
    if (profile.boot) {
      args.insert(args.end(), {"--set", "boot.kernel=" + testing::guest_kernel().string(), "--set",
                               "boot.initrd=" + testing::guest_initrd().string()});
    }
    for (std::size_t i = 0; i < profile.disks.size(); ++i) {
      const fs::path disk = dir / ("disk" + std::to_string(i));
      auto created = process::run_program({"qemu-img", "create", "-q", "-f",
                                           std::string(to_string(profile.disks[i].format)), disk.string(),
                                           std::to_string(profile.disks[i].size_bytes.value_or(64 << 20))});
      ASSERT_EQ(created.exit_code, 0) << created.out;
      args.insert(args.end(), {"--set", "disk[" + std::to_string(i) + "].path=" + disk.string()});
    }
    args.push_back(entry.path().string());
    auto dry_run = testing::qvm(dir / "state", args);
    ASSERT_EQ(dry_run.exit_code, 0) << dry_run.err;
    std::vector<std::string> argv = nlohmann::json::parse(dry_run.out).get<std::vector<std::string>>();

    // What the supervisor prepares before it runs this argv: its folders and NVRAM copy.
    fs::path qmp_socket, serial_log;
    for (std::size_t i = 0; i + 1 < argv.size(); ++i) {
      const std::string& word = argv[i + 1];
      if (argv[i] == "-pidfile") fs::create_directories(fs::path(word).parent_path());
      if (word.rfind("socket,id=qmp-client,path=", 0) == 0) {
        qmp_socket = word.substr(26, word.find(",server") - 26);
      }
      if (auto at = word.find("logfile="); at != std::string::npos) {
        serial_log = word.substr(at + 8, word.find(",logappend") - at - 8);
        fs::create_directories(serial_log.parent_path());
      }
      if (auto at = word.find("uefi-vars.fd"); at != std::string::npos && argv[i] == "-blockdev") {
        fs::path vars = word.substr(word.find("filename=") + 9, at + 12 - word.find("filename=") - 9);
        fs::copy_file(real_host(profile).uefi->vars_template, vars);
      }
    }
    ASSERT_FALSE(qmp_socket.empty());
    process::Process qemu = process::Process::spawn({argv, dir / "qemu.log", true, {}});
    QemuGuard guard{qemu};
    ASSERT_TRUE(testing::eventually([&] { return fs::exists(qmp_socket) || qemu.poll(); }, 20s));
    ASSERT_FALSE(qemu.poll()) << "QEMU refused the command line:\n"
                              << store::read_file_if_exists(dir / "qemu.log").value_or("");
    QmpSession qmp(qmp_socket, 10s);
    EXPECT_EQ(qmp.execute("query-status")["status"], "prelaunch");
    qmp.execute("quit");
    auto exit = qemu.wait(20000);
    ASSERT_TRUE(exit);
    EXPECT_TRUE(exit->success()) << exit->describe();
    ++checked;
  }
  EXPECT_GE(checked, 5);
}

}  // namespace
}  // namespace qvm
