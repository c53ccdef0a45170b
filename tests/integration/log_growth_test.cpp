// A guest that floods its console or its event journal cannot fill the host's disk: the
// logs are capped ([logs] max_size) and rotated to one .1 copy, and `qvm logs` / `events`
// read across the rotation.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "qvm/qmp.hpp"
#include "qvm/vm.hpp"
#include "support/cli_runner.hpp"
#include "support/guest_shell.hpp"
#include "support/state_dir_test.hpp"
#include "support/test_guest.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr std::uint64_t kCap = 1 << 20;
// What the supervisor's check interval (20 ms) lets a flood add beyond the cap, twice.
constexpr std::uint64_t kSlack = 256 << 10;

std::uint64_t size_of(const fs::path& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  return ec ? 0 : size;
}

// The lines of `text` that are only a number (what `seq` printed), in order.
std::vector<long> numbers_in(const std::string& text) {
  std::vector<long> numbers;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    // The shell's prompt has no newline: the first line the flood prints follows it.
    if (line.rfind("qvm# ", 0) == 0) line.erase(0, 5);
    if (line.empty() || !std::all_of(line.begin(), line.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    numbers.push_back(std::stol(line));
  }
  return numbers;
}

class LogGrowthIntegrationTest : public testing::StateDirTest {
 protected:
  // Kills the VM when a test leaves early, before the `-f` reader it waits on is joined.
  struct StopsVm {
    LogGrowthIntegrationTest* test;
    std::string name;
    ~StopsVm() { test->qvm({"kill", name}); }
  };

  fs::path up(const std::string& name, const std::string& max_size) {
    const auto profile = testing::write_guest_profile(
        dir_, testing::guest(name).toml("[logs]\nmax_size = \"" + max_size + "\"\n"));
    const auto result = qvm({"up", profile.string()});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return state_ / "vms" / name;
  }
};

TEST_F(LogGrowthIntegrationTest, AFloodedConsoleStaysUnderTwiceTheCapAndLogsFollowsIt) {
  QVM_REQUIRE_TEST_GUEST();
  const fs::path folder = up("flood", "1MiB");
  const fs::path serial = folder / "serial.log";
  const fs::path rotated = folder / "serial.log.1";

  // Watches the disk use of serial.log and its .1 while the guest floods.
  std::atomic<bool> flooding{true};
  std::atomic<std::uint64_t> most{0};
  std::thread meter([&] {
    while (flooding) {
      most = std::max<std::uint64_t>(most, size_of(serial) + size_of(rotated));
      // A sampling period, not a wait: the peak is what is measured, every 5 ms.
      std::this_thread::sleep_for(5ms);
    }
  });
  auto follow = std::async(std::launch::async, [&] { return qvm({"logs", "flood", "-f"}, 600s); });
  const StopsVm stop_on_failure{this, "flood"};
  // About 3.4 MB of numbered lines, in the background so the console shell answers at once.
  constexpr long kLast = 500000;
  testing::run_in_guest(status("flood")["sockets"]["console"].get<std::string>(),
                        // After the shell's next prompt, which would otherwise land inside a line.
                        "(sleep 1; seq 1 " + std::to_string(kLast) + "; echo qvm-flood-done) & true");
  const bool done = testing::eventually(
      [&] { return qvm({"logs", "flood"}).out.find("qvm-flood-done") != std::string::npos; }, 300s);
  flooding = false;
  meter.join();
  ASSERT_TRUE(done) << "the flood did not finish";

  EXPECT_TRUE(fs::exists(rotated));
  EXPECT_LE(most.load(), 2 * kCap + kSlack) << "serial.log and serial.log.1 together";
  EXPECT_LE(size_of(serial) + size_of(rotated), 2 * kCap + kSlack);

  // `qvm logs` shows the newest lines, .1 first, in order, each once.
  const testing::CommandResult logs = qvm({"logs", "flood"});
  ASSERT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_LE(logs.out.size(), 2 * kCap + kSlack);
  const std::vector<long> shown = numbers_in(logs.out);
  ASSERT_FALSE(shown.empty());
  EXPECT_EQ(shown.back(), kLast);
  EXPECT_GT(shown.front(), 1) << "the oldest lines were rotated away";
  for (std::size_t i = 1; i < shown.size(); ++i) ASSERT_LT(shown[i - 1], shown[i]) << "at line " << i;

  // `logs -f` followed through every rotation: each line once, in order, up to the last.
  ASSERT_EQ(qvm({"kill", "flood"}).exit_code, 0);
  ASSERT_EQ(follow.wait_for(60s), std::future_status::ready) << "logs -f did not end with the VM";
  const testing::CommandResult followed = follow.get();
  EXPECT_EQ(followed.exit_code, 0) << followed.err;
  const std::vector<long> seen = numbers_in(followed.out);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.front(), 1);
  EXPECT_EQ(seen.back(), kLast);
  for (std::size_t i = 1; i < seen.size(); ++i) ASSERT_LT(seen[i - 1], seen[i]) << "repeated at line " << i;
  // ext4 and XFS cut the rotated blocks off under the kernel's inode lock, so not a line
  // is lost; where the log is copied and truncated a few bytes may be (see log_rotation.hpp).
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(kLast)) << "lines lost while following";
}

TEST_F(LogGrowthIntegrationTest, TheEventJournalIsCappedAndEventsFollowsItsRotation) {
  QVM_REQUIRE_TEST_GUEST();
  constexpr std::uint64_t kJournalCap = 64 << 10;
  const fs::path folder = up("journal", "64KiB");
  const fs::path events = folder / "events.jsonl";
  const fs::path rotated = folder / "events.jsonl.1";
  auto follow = std::async(std::launch::async, [&] { return qvm({"events", "journal", "-f"}, 600s); });
  const StopsVm stop_on_failure{this, "journal"};
  // Every stop/cont pair journals a STOP and a RESUME (about 220 bytes): a client that
  // hammers the VM's state, as a guest hammering pvpanic would, until the journal has
  // rotated twice (the second replaces the first .1). One QMP session for all of them.
  auto inventory = Inventory::open(state_);
  const Vm vm = inventory->get("journal");
  int pairs = 0;
  {
    QmpSession session(vm.qmp_socket(), 10s);
    int rotations = 0;
    std::uint64_t last_size = 0;
    while (rotations < 2) {
      ASSERT_NO_THROW(session.execute("stop"));
      ASSERT_NO_THROW(session.execute("cont"));
      session.take_events();
      ++pairs;
      const std::uint64_t size = size_of(events);
      if (size < last_size) ++rotations;
      last_size = size;
      ASSERT_LE(size + size_of(rotated), 2 * kJournalCap + 4096) << "after " << pairs << " stop/cont pairs";
    }
    // The supervisor handles events in order, and saves the state before it journals:
    // once it says paused, then running, after this last pair every pair is in the journal.
    ASSERT_NO_THROW(session.execute("stop"));
    ASSERT_TRUE(testing::eventually([&] { return vm.status().state == VmState::paused; }, 60s));
    ASSERT_NO_THROW(session.execute("cont"));
    ASSERT_TRUE(testing::eventually([&] { return vm.status().state == VmState::running; }, 60s));
    ++pairs;
  }
  ASSERT_TRUE(fs::exists(rotated));

  // `qvm events` reads .1 then the current file: the newest entry last, JSON lines only.
  // (The supervisor saves "running" a moment before it journals the RESUME.)
  testing::CommandResult shown;
  testing::eventually([&] {
    shown = qvm({"events", "journal"});
    return shown.out.ends_with("}\n") && shown.out.rfind("\"event\":\"RESUME\"") > shown.out.rfind("\"event\":\"STOP\"");
  }, 10s);
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_LE(shown.out.size(), 2 * kJournalCap + 4096);
  std::vector<std::string> names;
  std::istringstream in(shown.out);
  for (std::string line; std::getline(in, line);) {
    const auto entry = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(entry.is_object()) << line;
    names.push_back(entry.value("event", ""));
  }
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.back(), "RESUME");
  EXPECT_EQ(std::find(names.begin(), names.end(), "QVM_START"), names.end()) << "the oldest entries were rotated away";

  // `events -f` went through both rotations: every STOP and RESUME once, alternating.
  ASSERT_EQ(qvm({"kill", "journal"}).exit_code, 0);
  ASSERT_EQ(follow.wait_for(60s), std::future_status::ready) << "events -f did not end with the VM";
  const testing::CommandResult followed = follow.get();
  EXPECT_EQ(followed.exit_code, 0) << followed.err;
  std::string states;
  std::istringstream follow_in(followed.out);
  for (std::string line; std::getline(follow_in, line);) {
    const auto entry = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(entry.is_object()) << "a line cut or joined: " << line;
    const std::string name = entry.value("event", "");
    if (name == "STOP") states += 'S';
    if (name == "RESUME") states += 'R';
  }
  std::string expected = "R";  // the start's cont
  for (int i = 0; i < pairs; ++i) expected += "SR";
  // The kill journals nothing of either kind, so the run of pairs is exact.
  EXPECT_EQ(states, expected);
}

}  // namespace
}  // namespace qvm
