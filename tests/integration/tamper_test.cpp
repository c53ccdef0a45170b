// What qvm reads back from a VM's folder may have been damaged or forged: a state.json cut
// short or edited, a pid that names someone else's process, a broken stored profile, and
// commands racing each other. None of it may cost the user control of a running VM, get a
// foreign process signalled, or leave a QEMU without its folder.
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "process/child.hpp"
#include "store/files.hpp"
#include "support/cli_runner.hpp"
#include "support/state_dir_test.hpp"
#include "support/temp_dir.hpp"
#include "support/test_guest.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::CommandResult;

// How many live processes have `-uuid UUID` on their command line, found by reading /proc
// (QEMU's, and those of anyone who copied it).
int processes_with_uuid(const std::string& uuid) {
  const std::string needle = std::string("-uuid") + '\0' + uuid + '\0';
  int count = 0;
  std::error_code ec;
  for (fs::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string pid = it->path().filename().string();
    if (pid.empty() || !std::all_of(pid.begin(), pid.end(), [](unsigned char c) { return std::isdigit(c); })) continue;
    std::ifstream in(it->path() / "cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.find(needle) != std::string::npos) ++count;
  }
  return count;
}

bool process_alive(int pid) { return ::kill(pid, 0) == 0; }

// Every file under `root` but those of the VM folder `skip`, with its contents.
std::map<std::string, std::string> files_outside(const fs::path& root, const fs::path& skip) {
  std::map<std::string, std::string> files;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& path = it->path();
    if (path == skip) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(ec)) files[path.string()] = store::read_file_if_exists(path).value_or("");
    else files[path.string()] = "(folder or other)";
  }
  return files;
}

class TamperIntegrationTest : public testing::StateDirTest {
 protected:
  fs::path state_file(const std::string& name) { return state_ / "vms" / name / "state.json"; }
  void damage(const std::string& name, const std::string& text) {
    std::ofstream(state_file(name), std::ios::trunc) << text;
  }
  // state.json parses again and is the VM's own: the supervisor rewrote it.
  void expect_repaired(const std::string& name) {
    EXPECT_TRUE(testing::eventually(
        [&] {
          auto json = nlohmann::json::parse(store::read_file_if_exists(state_file(name)).value_or(""), nullptr, false);
          return json.is_object() && json.value("name", "") == name && json.value("state", "") == "running";
        },
        10s))
        << store::read_file_if_exists(state_file(name)).value_or("");
  }
};

TEST_F(TamperIntegrationTest, ABrokenStateFileOfARunningVmKeepsItManageable) {
  QVM_REQUIRE_TEST_GUEST();
  const fs::path profile = testing::write_guest_profile(dir_, testing::guest("t"));
  ASSERT_EQ(qvm({"up", profile.string()}).exit_code, 0);
  const std::string good = *store::read_file_if_exists(state_file("t"));
  const nlohmann::json status_before = status("t");
  const std::string path = state_file("t").string();
  fs::create_directories(state_ / "other");  // where a "../other" would write, if anything did
  const auto outside = files_outside(state_, state_ / "vms" / "t");

  nlohmann::json wrong_types = nlohmann::json::parse(good);
  wrong_types["pid"] = "12";
  wrong_types["state"] = 5;
  nlohmann::json dotdot = nlohmann::json::parse(good);
  dotdot["name"] = "../other";
  nlohmann::json other = nlohmann::json::parse(good);
  other["name"] = "other";

  // garbage -> status
  damage("t", "\x89\x01 not json at all");
  CommandResult shown = qvm({"status", "t"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_NE(shown.out.find("state:     running"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find(path + " is broken: it is not JSON"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("is alive and rewrites the file"), std::string::npos) << shown.out;
  expect_repaired("t");

  // cut short -> ls
  damage("t", good.substr(0, good.size() / 2));
  CommandResult listed = qvm({"ls"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_NE(listed.out.find("running"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find(path + " is broken: it is not JSON"), std::string::npos) << listed.out;
  expect_repaired("t");

  // wrong types -> status --json
  damage("t", wrong_types.dump());
  nlohmann::json json = status("t");
  EXPECT_EQ(json["state"], "running");
  EXPECT_EQ(json["reason_code"], "state-unreadable");
  EXPECT_EQ(json["pid"], status_before["pid"]);
  EXPECT_EQ(json["name"], "t");
  EXPECT_NE(json["reason"].get<std::string>().find(path + " is broken: \"state\" is not a string"), std::string::npos)
      << json.dump();
  expect_repaired("t");

  // a name that is a path -> qmp
  damage("t", dotdot.dump());
  CommandResult qmp = qvm({"qmp", "t", "query-status"});
  ASSERT_EQ(qmp.exit_code, 0) << qmp.err;
  EXPECT_NE(qmp.out.find("\"running\""), std::string::npos) << qmp.out;
  expect_repaired("t");

  // another name -> console
  damage("t", other.dump());
  CommandResult console = testing::qvm(state_, {"console", "t"}, 60s, "echo tamper-$((6*7))\n");
  ASSERT_EQ(console.exit_code, 0) << console.err;
  EXPECT_NE(console.out.find("tamper-42"), std::string::npos) << console.out;
  expect_repaired("t");

  // garbage -> down
  damage("t", "");
  CommandResult down = qvm({"down", "t"});
  ASSERT_EQ(down.exit_code, 0) << down.err;
  EXPECT_NE(down.out.find("t: stopped in"), std::string::npos) << down.out;
  EXPECT_EQ(status("t")["state"], "stopped");
  EXPECT_EQ(processes_with_uuid(status_before["uuid"]), 0);

  // ... and kill.
  ASSERT_EQ(qvm({"up", profile.string()}).exit_code, 0);
  damage("t", dotdot.dump().substr(0, 30));
  CommandResult killed = qvm({"kill", "t"});
  ASSERT_EQ(killed.exit_code, 0) << killed.err;
  EXPECT_EQ(processes_with_uuid(status_before["uuid"]), 0);

  EXPECT_EQ(files_outside(state_, state_ / "vms" / "t"), outside) << "a file outside the VM's folder changed";
  EXPECT_FALSE(fs::exists(dir_ / "other"));
}

// The VM's QEMU is gone and its pid now names another process, one that even carries the
// VM's -uuid on its command line (anyone can start one). qvm must not signal it, show it as
// the VM, or attach a supervisor to it.
TEST_F(TamperIntegrationTest, AForeignProcessIsNeverSignalledNorShownAsTheVm) {
  QVM_REQUIRE_TEST_GUEST();
  const fs::path profile = testing::write_guest_profile(dir_, testing::guest("f").no_ready_wait());
  ASSERT_EQ(qvm({"up", profile.string()}).exit_code, 0);
  const nlohmann::json before = status("f");
  const std::string uuid = before["uuid"];
  ASSERT_EQ(::kill(before["supervisor_pid"].get<int>(), SIGKILL), 0);
  ASSERT_EQ(::kill(before["pid"].get<int>(), SIGKILL), 0);
  ASSERT_TRUE(testing::eventually([&] { return processes_with_uuid(uuid) == 0; }, 20s));
  const std::string left = *store::read_file_if_exists(state_file("f"));
  ASSERT_EQ(nlohmann::json::parse(left)["state"], "running");

  // Another user's process where we can make one; else our own.
  std::vector<std::string> argv = {"sh", "-c", "sleep 120; :", "qemu-system-x86_64", "-uuid", uuid};
  if (::geteuid() == 0) {
    const struct passwd* nobody = ::getpwnam("nobody");
    ASSERT_NE(nobody, nullptr);
    argv.insert(argv.begin(), {"setpriv", "--reuid=" + std::to_string(nobody->pw_uid),
                               "--regid=" + std::to_string(nobody->pw_gid), "--clear-groups", "--"});
  }
  process::Process impostor = process::Process::spawn({argv});
  ASSERT_TRUE(testing::eventually([&] { return processes_with_uuid(uuid) == 1; }, 10s));
  nlohmann::json forged = nlohmann::json::parse(left);
  forged["pid"] = impostor.pid();
  auto plant = [&] { damage("f", forged.dump(2)); };

  plant();
  nlohmann::json shown = status("f");
  EXPECT_EQ(shown["state"], "crashed") << shown.dump();
  EXPECT_EQ(shown["reason_code"], "vanished") << shown.dump();
  EXPECT_TRUE(shown["pid"].is_null()) << shown.dump();
  EXPECT_FALSE(store::FileLock::is_held(state_ / "vms" / "f" / "supervisor.lock")) << "a supervisor adopted it";
  EXPECT_TRUE(process_alive(impostor.pid()));

  plant();
  CommandResult listed = qvm({"ls", "--json"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  const auto all = nlohmann::json::parse(listed.out);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0]["state"], "crashed");
  EXPECT_TRUE(all[0]["pid"].is_null());

  plant();
  CommandResult killed = qvm({"kill", "f"});
  EXPECT_EQ(killed.exit_code, 0) << killed.err;
  EXPECT_TRUE(process_alive(impostor.pid())) << "qvm kill signalled a foreign process";

  plant();
  CommandResult removed = qvm({"rm", "--force", "f"});
  EXPECT_EQ(removed.exit_code, 0) << removed.err;
  EXPECT_TRUE(process_alive(impostor.pid())) << "qvm rm --force signalled a foreign process";
  EXPECT_FALSE(fs::exists(state_ / "vms" / "f"));

  impostor.send_signal(SIGKILL);
  impostor.wait(5000);
}

// A stored profile.toml that no longer parses must not keep a running VM from stopping.
TEST_F(TamperIntegrationTest, ABrokenStoredProfileNeverBlocksDownOrKill) {
  QVM_REQUIRE_TEST_GUEST();
  const fs::path profile = testing::write_guest_profile(dir_, testing::guest("p").no_ready_wait());
  const fs::path stored = state_ / "vms" / "p" / "profile.toml";
  ASSERT_EQ(qvm({"up", profile.string()}).exit_code, 0);
  const std::string uuid = status("p")["uuid"];
  std::ofstream(stored, std::ios::trunc) << "name = \"p\"\nmemory = ";
  CommandResult down = qvm({"down", "--force", "p"});
  ASSERT_EQ(down.exit_code, 0) << down.err;
  EXPECT_NE(down.err.find("qvm: warning: "), std::string::npos) << down.err;
  EXPECT_NE(down.err.find(stored.string()), std::string::npos) << down.err;
  EXPECT_NE(down.err.find("; shutting down with the default ACPI timeout of 60 s"), std::string::npos) << down.err;
  EXPECT_EQ(processes_with_uuid(uuid), 0);

  ASSERT_EQ(qvm({"up", profile.string()}).exit_code, 0);
  std::ofstream(stored, std::ios::trunc) << "";
  CommandResult killed = qvm({"kill", "p"});
  ASSERT_EQ(killed.exit_code, 0) << killed.err;
  EXPECT_EQ(processes_with_uuid(uuid), 0);
}

// rm racing up, start or down, at random moments: afterwards either the VM's folder exists
// with the QEMU its state says (and rm said no), or there is neither folder nor QEMU.
TEST_F(TamperIntegrationTest, RmRacingUpStartOrDownNeverLeavesAQemuWithoutItsFolder) {
  QVM_REQUIRE_TEST_GUEST();
  const std::string uuid = "3c1f9a52-7d4e-4b8a-9f60-1e2d3c4b5a69";
  const fs::path profile =
      testing::write_guest_profile(dir_, testing::guest("race").no_ready_wait().top("uuid = \"" + uuid + "\""));
  const fs::path folder = state_ / "vms" / "race";
  std::mt19937 random(20261203);
  std::uniform_int_distribution<int> delay_ms(0, 1200);
  const std::vector<std::string> bin = {testing::qvm_binary().string(), "--state-dir", state_.string()};
  auto command = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = bin;
    argv.insert(argv.end(), args.begin(), args.end());
    return std::async(std::launch::async, [argv] { return testing::run_command(argv, {}, "", 120s); });
  };
  std::map<std::string, int> outcomes;
  const auto started = std::chrono::steady_clock::now();
  constexpr int kRounds = 50;
  for (int round = 0; round < kRounds; ++round) {
    // Rounds 0-29 race `up` of an undefined VM, 30-39 `start` of a stopped one, 40-49
    // `down` of a running one; rm is plain in even rounds, --force in odd ones.
    const std::string other = round < 30 ? "up" : round < 40 ? "start" : "down";
    if (other == "start") {
      ASSERT_EQ(qvm({"up", profile.string()}).exit_code, 0);
      ASSERT_EQ(qvm({"kill", "race"}).exit_code, 0);
    } else if (other == "down") {
      ASSERT_EQ(qvm({"up", profile.string()}).exit_code, 0);
    }
    std::vector<std::string> rm = {"rm", "race"};
    if (round % 2 == 1) rm.push_back("--force");
    std::vector<std::string> args = other == "up"      ? std::vector<std::string>{"up", profile.string()}
                                    : other == "start" ? std::vector<std::string>{"start", "race"}
                                                       : std::vector<std::string>{"down", "--force", "race"};
    const int delay = delay_ms(random);
    // Either command may go first.
    const bool rm_first = round % 4 >= 2;
    auto first = command(rm_first ? rm : args);
    // Not a wait for anything: the random head start is the scenario, so that the second
    // command lands at every stage of the first; the checks below hold whichever it hits.
    std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    auto second = command(rm_first ? args : rm);
    const CommandResult a = first.get();
    const CommandResult b = second.get();
    const CommandResult& removal = rm_first ? a : b;
    const CommandResult& op = rm_first ? b : a;

    const std::string context = "round " + std::to_string(round) + " (" + other + " vs " +
                                (round % 2 ? "rm --force" : "rm") + ", " + (rm_first ? "rm first" : "rm second") +
                                ", " + std::to_string(delay) + " ms):\n" + other + ": " +
                                std::to_string(op.exit_code) + " " + op.out + op.err +
                                "\nrm: " + std::to_string(removal.exit_code) + " " + removal.out + removal.err;
    const int qemus = processes_with_uuid(uuid);
    if (fs::exists(folder)) {
      ASSERT_TRUE(fs::exists(folder / "profile.toml")) << "a folder left with no VM in it; " << context;
      EXPECT_NE(removal.exit_code, 0) << context;
      const nlohmann::json s = status("race");
      const std::string state = s.value("state", "?");
      const bool active = state == "running" || state == "starting" || state == "paused" || state == "stopping";
      ASSERT_EQ(qemus, active ? 1 : 0) << s.dump() << "\n" << context;
      ++outcomes[other + ": kept " + state];
      CommandResult cleanup = qvm({"rm", "--force", "race"});
      ASSERT_EQ(cleanup.exit_code, 0) << cleanup.err << "\n" << context;
    } else {
      ASSERT_EQ(qemus, 0) << "a QEMU runs for a VM whose folder is gone; " << context;
      ++outcomes[other + ": removed"];
    }
    ASSERT_FALSE(fs::exists(folder));
    ASSERT_EQ(processes_with_uuid(uuid), 0);
  }
  std::string summary;
  for (const auto& [what, count] : outcomes) summary += what + ": " + std::to_string(count) + "\n";
  std::cout << summary << "in " << std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started).count()
            << " s\n";
  // The delays must have produced both outcomes, or the race was not run.
  EXPECT_GT(outcomes["up: removed"], 0) << summary;
  EXPECT_GT(outcomes["up: kept running"], 0) << summary;
}

}  // namespace
}  // namespace qvm
