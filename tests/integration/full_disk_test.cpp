// A full disk on the real test guest (TCG): the state folder, or a guest's disk image, on a
// tiny tmpfs that the test fills up and frees again. Needs root (mount).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>

#include "process/run_program.hpp"
#include "store/files.hpp"
#include "support/cli_runner.hpp"
#include "support/guest_shell.hpp"
#include "support/state_dir_test.hpp"
#include "support/test_guest.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::CommandResult;

// Every process whose command line carries `-uuid UUID`: the VM's QEMU, wherever it came from.
std::vector<int> qemu_pids_with_uuid(const std::string& uuid) {
  std::vector<int> pids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::ifstream in(entry.path() / "cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.find(std::string("-uuid") + '\0' + uuid + '\0') != std::string::npos) pids.push_back(std::stoi(name));
  }
  return pids;
}

class FullDiskIntegrationTest : public testing::StateDirTest {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root";
    QVM_REQUIRE_TEST_GUEST();
    mount_tmpfs(state_, "16m");
  }

  void TearDown() override {
    // Whatever happened: space first (so that every VM can record its end), then no VM,
    // then no mount.
    free_space();
    StateDirTest::TearDown();
    for (auto it = mounts_.rbegin(); it != mounts_.rend(); ++it) ::umount2(it->c_str(), MNT_DETACH);
  }

  void mount_tmpfs(const fs::path& where, const std::string& size) {
    fs::create_directories(where);
    const std::string options = "size=" + size + ",mode=0700";
    ASSERT_EQ(::mount("tmpfs", where.c_str(), "tmpfs", 0, options.c_str()), 0)
        << "mount tmpfs on " << where << ": " << std::strerror(errno);
    mounts_.push_back(where);
  }

  // Fills the state folder's file system to the last byte.
  void fill_disk() {
    const fs::path filler = state_ / "filler";
    int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    const std::string block(65536, 'x');
    for (std::size_t size = block.size();;) {
      ssize_t n = ::write(fd, block.data(), size);
      if (n < 0 && errno == ENOSPC) {
        if (size == 1) break;
        size /= 2;  // the last partial page too
        continue;
      }
      ASSERT_GE(n, 0) << std::strerror(errno);
    }
    ::close(fd);
    fillers_.push_back(filler);
  }

  void free_space() {
    for (const auto& filler : fillers_) {
      std::error_code ec;
      fs::remove(filler, ec);
    }
    fillers_.clear();
  }

  fs::path profile_with_disk(const std::string& name) {
    return testing::write_guest_profile(
        dir_, testing::guest(name).toml("[[disk]]\npath = \"" + (dir_ / (name + ".qcow2")).string() +
                                        "\"\nsize = \"64MiB\"\n"));
  }

  fs::path vm_dir(const std::string& name) { return state_ / "vms" / name; }

  // state.json as a reader finds it: it must always parse.
  nlohmann::json state_file(const std::string& name) {
    auto text = store::read_file_if_exists(vm_dir(name) / "state.json");
    EXPECT_TRUE(text) << "no state.json";
    return nlohmann::json::parse(text.value_or("{}"));
  }

  bool supervisor_alive(const std::string& name) { return store::FileLock::is_held(vm_dir(name) / "supervisor.lock"); }

  void expect_no_space_error(const CommandResult& result, const std::string& file) {
    EXPECT_NE(result.exit_code, 0) << result.out;
    EXPECT_NE(result.err.find("No space left on device"), std::string::npos) << result.err;
    EXPECT_NE(result.err.find("free some space"), std::string::npos) << result.err;
    EXPECT_NE(result.err.find(file), std::string::npos) << result.err;
  }

  void expect_images_check_clean(const std::string& name) {
    std::vector<fs::path> images = {dir_ / (name + ".qcow2")};
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(vm_dir(name) / "disks", ec)) images.push_back(entry.path());
    for (const auto& image : images) {
      auto check = process::run_program({"qemu-img", "check", "-U", image.string()});
      EXPECT_EQ(check.exit_code, 0) << image << "\n" << check.out;
    }
  }

  std::vector<fs::path> mounts_;
  std::vector<fs::path> fillers_;
};

TEST_F(FullDiskIntegrationTest, UpAndStartOnAFullDiskFailWithNoSpaceAndLeaveNoQemu) {
  const fs::path profile = profile_with_disk("full");
  ASSERT_EQ(qvm({"up", profile.string()}).exit_code, 0);
  const std::string uuid = status("full")["uuid"];
  ASSERT_EQ(qvm({"down", "full"}).exit_code, 0);
  fill_disk();

  for (const std::vector<std::string>& command :
       {std::vector<std::string>{"up", profile.string()}, std::vector<std::string>{"start", "full"}}) {
    CommandResult result = qvm(command);
    expect_no_space_error(result, "state.json");
    EXPECT_NE(result.err.find("cannot record the state of VM \"full\""), std::string::npos) << result.err;
    // Nothing half-done: no QEMU, no supervisor, and state.json still says stopped.
    EXPECT_TRUE(testing::eventually([&] { return qemu_pids_with_uuid(uuid).empty(); }, 10s))
        << command[0] << " left QEMU running";
    EXPECT_TRUE(testing::eventually([&] { return !supervisor_alive("full"); }, 10s));
    EXPECT_EQ(state_file("full")["state"], "stopped");
    EXPECT_EQ(status("full")["state"], "stopped");
  }

  free_space();
  CommandResult started = qvm({"start", "full"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  EXPECT_EQ(status("full")["state"], "running");
  CommandResult down = qvm({"down", "full"});
  EXPECT_EQ(down.exit_code, 0) << down.err;
  EXPECT_EQ(state_file("full")["state"], "stopped");
  EXPECT_TRUE(qemu_pids_with_uuid(uuid).empty());
  expect_images_check_clean("full");
}

TEST_F(FullDiskIntegrationTest, ARunningVmOutlivesAFullDiskAndCatchesUpOnceSpaceIsFreed) {
  ASSERT_EQ(qvm({"up", profile_with_disk("busy").string()}).exit_code, 0);
  ASSERT_EQ(qvm({"snapshot", "create", "busy", "s0"}).exit_code, 0);
  const int pid = status("busy")["pid"];
  fill_disk();

  // A state change state.json cannot take: the supervisor keeps it and stays.
  EXPECT_EQ(qvm({"pause", "busy"}).exit_code, 0);
  CommandResult query = qvm({"qmp", "busy", "query-status"});
  ASSERT_EQ(query.exit_code, 0) << query.err;
  EXPECT_EQ(nlohmann::json::parse(query.out)["status"], "paused") << query.out;
  // (supervisor.log is on the full disk too: what the supervisor could not write is not there.)
  EXPECT_EQ(state_file("busy")["state"], "running");
  EXPECT_TRUE(supervisor_alive("busy"));
  EXPECT_EQ(::kill(pid, 0), 0) << "QEMU is gone";
  // Nobody is told it stopped.
  CommandResult shown = qvm({"status", "busy", "--json"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  const std::string state = nlohmann::json::parse(shown.out)["state"];
  EXPECT_TRUE(state == "running" || state == "paused") << state;
  CommandResult listed = qvm({"ls"});
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_EQ(listed.out.find("stopped"), std::string::npos) << listed.out;

  // down, snapshot create and rm fail with the reason, and change nothing.
  CommandResult down = qvm({"down", "busy"});
  expect_no_space_error(down, "state.json");
  EXPECT_NE(down.err.find("qvm kill busy"), std::string::npos) << down.err;
  EXPECT_EQ(::kill(pid, 0), 0) << "down stopped QEMU after all";
  expect_no_space_error(qvm({"snapshot", "create", "busy", "s1"}), "snapshots.json");
  expect_no_space_error(qvm({"snapshot", "rm", "busy", "s0"}), "snapshots.json");
  CommandResult snapshots = qvm({"snapshot", "ls", "busy"});
  EXPECT_EQ(snapshots.exit_code, 0) << snapshots.err;
  EXPECT_NE(snapshots.out.find("s0"), std::string::npos) << snapshots.out;
  EXPECT_EQ(snapshots.out.find("s1"), std::string::npos) << snapshots.out;
  EXPECT_TRUE(supervisor_alive("busy"));

  // Space is back: state.json catches up by itself, and everything works again.
  free_space();
  EXPECT_TRUE(testing::eventually([&] { return state_file("busy")["state"] == "paused"; }, 15s))
      << state_file("busy").dump();
  EXPECT_EQ(qvm({"resume", "busy"}).exit_code, 0);
  CommandResult removed = qvm({"snapshot", "rm", "busy", "s0"});
  EXPECT_EQ(removed.exit_code, 0) << removed.err;
  CommandResult stopped = qvm({"down", "busy"});
  EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
  EXPECT_EQ(state_file("busy")["state"], "stopped");
  EXPECT_FALSE(supervisor_alive("busy"));
  expect_images_check_clean("busy");
}

TEST_F(FullDiskIntegrationTest, AGuestWritingToAFullDiskIsPausedWithTheDiskNamedAndResumes) {
  const fs::path images = dir_ / "images";
  mount_tmpfs(images, "4m");
  const fs::path image = images / "data.qcow2";
  auto profile = testing::write_guest_profile(
      dir_, testing::guest("iofull").toml("[[disk]]\npath = \"" + image.string() + "\"\nsize = \"64MiB\"\n"));
  CommandResult up = qvm({"up", profile.string()});
  ASSERT_EQ(up.exit_code, 0) << up.err;
  const std::string console = status("iofull")["sockets"]["console"];

  // 16 MiB into a 64 MiB disk whose image sits on a 4 MiB file system.
  auto writer = std::async(std::launch::async, [&] {
    int code = -1;
    testing::run_in_guest(console, "dd if=/dev/zero of=/dev/vda bs=1M count=16 conv=fsync 2>/dev/null", 240s,
                          &code);
    return code;
  });
  ASSERT_TRUE(testing::eventually([&] { return status("iofull")["state"] == "paused"; }, 120s))
      << status("iofull").dump();
  nlohmann::json paused = status("iofull");
  EXPECT_EQ(paused["reason"], "I/O error on disk0");
  EXPECT_EQ(paused["reason_code"], "io-error");
  CommandResult shown = qvm({"status", "iofull"});
  EXPECT_NE(shown.out.find("I/O error on disk0"), std::string::npos) << shown.out;
  CommandResult listed = qvm({"ls"});
  EXPECT_NE(listed.out.find("I/O error on disk0"), std::string::npos) << listed.out;

  // Room again: resume retries the write and the guest's dd finishes.
  ASSERT_EQ(::mount("tmpfs", images.c_str(), "tmpfs", MS_REMOUNT, "size=128m"), 0) << std::strerror(errno);
  CommandResult resumed = qvm({"resume", "iofull"});
  EXPECT_EQ(resumed.exit_code, 0) << resumed.err;
  ASSERT_EQ(writer.wait_for(180s), std::future_status::ready) << status("iofull").dump();
  EXPECT_EQ(writer.get(), 0);
  EXPECT_EQ(status("iofull")["state"], "running");
  CommandResult down = qvm({"down", "iofull"});
  EXPECT_EQ(down.exit_code, 0) << down.err;
  auto check = process::run_program({"qemu-img", "check", image.string()});
  EXPECT_EQ(check.exit_code, 0) << check.out;
}

}  // namespace
}  // namespace qvm
