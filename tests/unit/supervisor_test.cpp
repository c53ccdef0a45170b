// The supervisor against a fake QEMU: a shell process standing in for QEMU's pid, and a
// FakeQmpServer behind its monitor socket. No QEMU runs here.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include "process/child.hpp"
#include "store/files.hpp"
#include "supervisor/control.hpp"
#include "supervisor/launch.hpp"
#include "supervisor/supervisor.hpp"
#include "support/fake_qmp_server.hpp"
#include "support/temp_dir.hpp"
#include "support/test_guest.hpp"

namespace qvm::supervisor {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::FakeQmpServer;
using testing::FakeReply;
using testing::TempDir;

class EverythingExists : public FileChecker {
 public:
  bool exists(const fs::path&) const override { return true; }
};

// Stand-ins for QEMU's process: how they react to SIGTERM is what the ladder tests need.
const std::vector<std::string> kExitsOnTerm = {"sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"};
const std::vector<std::string> kIgnoresTerm = {"sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"};
const std::vector<std::string> kFailsAtOnce = {"sh", "-c", "echo 'qemu: -device nope: no such device' >&2; exit 1"};
// What QEMU does on a nested KVM that refuses the host CPU's MSRs.
const std::vector<std::string> kAbortsOnKvm = {
    "sh", "-c",
    "echo '2026-11-29T23:06:58.079140Z qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69' >&2; "
    "echo 'qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion failed.' >&2; "
    "kill -ABRT $$"};

class SupervisorTest : public ::testing::Test {
 protected:
  void define(const std::string& extra_toml = "") {
    EverythingExists files;
    Profile profile = parse_profile("name = \"sup\"\n" + extra_toml, dir_ / "sup.toml", {{}, std::nullopt, &files});
    store_.define(profile);
  }

  Environment environment() {
    Environment env;
    env.probe_host = [this](const Profile&) {
      host::HostInfo host;
      host.kvm.usable = kvm_usable_;
      host.kvm.api_version = kvm_usable_ ? 12 : 0;
      if (!kvm_usable_) {
        host.kvm.problem = "/dev/kvm does not exist";
        host.kvm.hint = "load the kvm module";
      }
      host.qemu.binary = "/usr/bin/qemu-system-x86_64";
      return host;
    };
    env.spawn = [this](const process::SpawnOptions& options) {
      std::lock_guard guard(mutex_);
      argvs_.push_back(options.argv);
      const bool kvm = std::find(options.argv.begin(), options.argv.end(), "kvm") != options.argv.end();
      if (kvm && !kvm_qemu_.empty()) return process::Process::spawn({kvm_qemu_, options.log, true, {}});
      // The monitor socket QEMU would create is the fake server's.
      fs::create_symlink(server_->socket_path(), store_.paths("sup").supervisor_qmp());
      auto qemu = process::Process::spawn({fake_qemu_, options.log, true, {}});
      spawned_pids_.push_back(qemu.pid());
      return qemu;
    };
    env.now = [] { return std::chrono::system_clock::now(); };
    // state.json on a disk that the test can fill up and free again.
    env.write_status = [this](const VmStatus& s) {
      if (disk_full_) {
        throw Error("cannot write " + (store_.paths("sup").state_dir / "state.json.tmp").string() +
                    ": No space left on device");
      }
      store_.write_status(s);
    };
    return env;
  }

  // Runs the supervisor on its own thread; its exit code arrives in `exit_code_`.
  void start(Timings timings = fast_timings()) {
    Options options;
    options.name = "sup";
    options.timings = timings;
    options.notify = [this](const nlohmann::json& message) {
      // What `qvm status` would have read the moment `qvm up` heard this.
      auto stored = store_.read_status("sup");
      std::lock_guard guard(mutex_);
      notices_.push_back(message);
      stored_at_notice_.push_back(stored ? stored->reason_code : "");
    };
    thread_ = std::thread([this, options] {
      boost::asio::io_context io;
      Supervisor supervisor(io, store_, options, environment());
      try {
        exit_code_.set_value(supervisor.run());
      } catch (const std::exception& e) {
        ADD_FAILURE() << "the supervisor died: " << e.what();
        exit_code_.set_value(-1);
      }
    });
  }

  static Timings fast_timings() {
    Timings t;
    t.qmp_connect = 5000ms;
    t.acpi_repeat = 200ms;
    t.quit_wait = 300ms;
    t.term_wait = 300ms;
    t.restart_backoff = 50ms;
    t.stable_uptime = 60s;
    t.restart_limit = 2;
    return t;
  }

  int finish() {
    auto future = exit_code_.get_future();
    EXPECT_EQ(future.wait_for(20s), std::future_status::ready) << "the supervisor did not end";
    thread_.join();
    return future.get();
  }

  VmStatus status() { return *store_.read_status("sup"); }

  bool notified(const std::string& phase) {
    std::lock_guard guard(mutex_);
    for (const auto& n : notices_) {
      if (n.value("phase", "") == phase) return true;
    }
    return false;
  }

  nlohmann::json down(int timeout, bool force = false) {
    return control_request(store_.paths("sup").runtime_dir / "control.sock",
                           {{"op", "down"}, {"timeout", timeout}, {"force", force}}, 20s);
  }

  std::vector<std::string> journal_events() {
    std::vector<std::string> names;
    auto text = store::read_file_if_exists(store_.paths("sup").state_dir / "events.jsonl").value_or("");
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) names.push_back(nlohmann::json::parse(line)["event"]);
    return names;
  }

  bool journal_has(const std::string& name) {
    auto names = journal_events();
    return std::find(names.begin(), names.end(), name) != names.end();
  }

  TempDir dir_;
  store::VmStore store_{dir_ / "state", dir_ / "run"};
  std::unique_ptr<FakeQmpServer> server_ = std::make_unique<FakeQmpServer>();
  std::vector<std::string> fake_qemu_ = kExitsOnTerm;
  bool kvm_usable_ = false;               // what the fake host probe says of KVM
  std::vector<std::string> kvm_qemu_;     // when set, the QEMU that runs with -accel kvm
  std::mutex mutex_;
  std::vector<std::vector<std::string>> argvs_;
  std::vector<nlohmann::json> notices_;
  std::vector<std::string> stored_at_notice_;  // state.json's reason_code at each notice
  std::promise<int> exit_code_;
  std::thread thread_;
  std::atomic<bool> disk_full_{false};  // every write of state.json fails with ENOSPC
  std::vector<int> spawned_pids_;       // every fake QEMU, in spawn order (under mutex_)
};

bool process_alive(int pid) {
  // A zombie is gone for the user: read its state rather than trusting kill(pid, 0).
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

TEST_F(SupervisorTest, StartsQemuPausedThenResumesItAndReportsReady) {
  define();
  server_->expect("cont");
  const auto micros = [] {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  const auto before = micros();
  start();
  ASSERT_TRUE(testing::eventually([&] { return notified("ready"); }, 10s));
  VmStatus s = status();
  EXPECT_EQ(s.state, VmState::running);
  EXPECT_EQ(s.accel, "tcg");
  EXPECT_TRUE(s.ready);
  ASSERT_TRUE(s.pid);
  EXPECT_EQ(*s.supervisor_pid, ::getpid());
  {
    std::lock_guard guard(mutex_);
    ASSERT_EQ(argvs_.size(), 1u);
    EXPECT_NE(std::find(argvs_[0].begin(), argvs_[0].end(), "-S"), argvs_[0].end());
    // The TCG fallback warning reached whoever started the VM.
    bool warned = false;
    for (const auto& n : notices_) warned |= n.value("phase", "") == "warning";
    EXPECT_TRUE(warned);
  }
  EXPECT_TRUE(journal_has("QVM_START"));
  EXPECT_TRUE(journal_has("QVM_READY"));
  // When QEMU was spawned, to the microsecond: set against the RESUME event's qemu_time it
  // tells how long QEMU itself took to start (scripts/bench.sh reports it).
  std::istringstream lines(store::read_file_if_exists(store_.paths("sup").state_dir / "events.jsonl").value_or(""));
  for (std::string line; std::getline(lines, line);) {
    const auto entry = nlohmann::json::parse(line);
    if (entry["event"] != "QVM_START") continue;
    const auto spawned = entry["data"].value("spawned_at_us", std::int64_t{0});
    EXPECT_GE(spawned, before);
    EXPECT_LE(spawned, micros());
  }
  ::kill(*s.pid, SIGKILL);
  finish();
}

TEST_F(SupervisorTest, GuestShutdownEventThenExitMeansStoppedByTheGuest) {
  define();
  server_->expect("cont");
  start();
  ASSERT_TRUE(testing::eventually([&] { return notified("ready"); }, 10s));
  server_->send_event("SHUTDOWN", {{"guest", true}, {"reason", "guest-shutdown"}});
  ASSERT_TRUE(testing::eventually([&] { return journal_has("SHUTDOWN"); }, 5s));
  ::kill(*status().pid, SIGTERM);
  EXPECT_EQ(finish(), 0);
  VmStatus s = status();
  EXPECT_EQ(s.state, VmState::stopped);
  EXPECT_EQ(s.reason, "guest shutdown");
  EXPECT_EQ(s.exit_code, 0);
  EXPECT_FALSE(s.pid);
  EXPECT_FALSE(fs::exists(store_.paths("sup").runtime_dir / "control.sock"));
}

TEST_F(SupervisorTest, QemuKilledWithoutShutdownIsACrashWithTheSignal) {
  define();
  server_->expect("cont");
  start();
  ASSERT_TRUE(testing::eventually([&] { return notified("ready"); }, 10s));
  ::kill(*status().pid, SIGKILL);
  EXPECT_EQ(finish(), 1);
  VmStatus s = status();
  EXPECT_EQ(s.state, VmState::crashed);
  EXPECT_EQ(s.reason, "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(s.reason_code, "crash-signal");
  EXPECT_EQ(s.exit_signal, 9);
}

TEST_F(SupervisorTest, PauseAndResumeEventsChangeTheState) {
  define();
  server_->expect("cont");
  start();
  ASSERT_TRUE(testing::eventually([&] { return notified("ready"); }, 10s));
  server_->send_event("STOP");
  EXPECT_TRUE(testing::eventually([&] { return status().state == VmState::paused; }, 5s));
  server_->send_event("RESUME");
  EXPECT_TRUE(testing::eventually([&] { return status().state == VmState::running; }, 5s));
  ::kill(*status().pid, SIGKILL);
  finish();
}

TEST_F(SupervisorTest, DownStopsAtTheAcpiStepWhenTheGuestObeys) {
  define();
  server_->expect("cont");
  server_->expect("cont");  // the ladder lets a paused guest see the button
  server_->expect("system_powerdown");
  // Exactly one press: with the usual 200 ms re-press, a second one came whenever this test
  // took longer than that between the press and QEMU's exit (a loaded machine), and the fake
  // monitor failed it as unexpected. The re-press is ShutdownLadderTest's, on a fake clock.
  Timings timings = fast_timings();
  timings.acpi_repeat = 60s;
  start(timings);
  ASSERT_TRUE(testing::eventually([&] { return notified("ready"); }, 10s));
  auto reply = std::async(std::launch::async, [&] { return down(30); });
  ASSERT_TRUE(server_->wait_received(4, 5s));
  EXPECT_EQ(status().state, VmState::stopping);
  server_->send_event("SHUTDOWN", {{"guest", true}, {"reason", "guest-shutdown"}});
  ASSERT_TRUE(testing::eventually([&] { return journal_has("SHUTDOWN"); }, 5s));
  ::kill(*status().pid, SIGTERM);
  nlohmann::json result = reply.get();
  EXPECT_EQ(result["ok"], true);
  EXPECT_EQ(result["step"], "acpi");
  EXPECT_EQ(finish(), 0);
  VmStatus s = status();
  EXPECT_EQ(s.state, VmState::stopped);
  EXPECT_EQ(s.reason, "host request");
  EXPECT_EQ(s.last_down_step, "acpi");
}

TEST_F(SupervisorTest, DownWalksTheWholeLadderForAQemuThatIgnoresEverything) {
  define();
  fake_qemu_ = kIgnoresTerm;
  server_->expect("cont");
  server_->expect("cont");
  // Pressed at once and every 200 ms until the 1 s timeout: at least 4 presses.
  for (int i = 0; i < 5; ++i) server_->expect("system_powerdown");
  server_->expect("quit");
  start();
  ASSERT_TRUE(testing::eventually([&] { return notified("ready"); }, 10s));
  std::vector<std::string> progress;
  nlohmann::json result = control_request(store_.paths("sup").runtime_dir / "control.sock",
                                          {{"op", "down"}, {"timeout", 1}}, 20s,
                                          [&](const std::string& line) { progress.push_back(line); });
  EXPECT_EQ(result["step"], "sigkill") << result.dump();
  EXPECT_EQ(finish(), 0);
  VmStatus s = status();
  EXPECT_EQ(s.state, VmState::stopped);
  EXPECT_EQ(s.reason, "host request");
  EXPECT_EQ(s.last_down_step, "sigkill");
  EXPECT_EQ(s.exit_signal, SIGKILL);
  ASSERT_GE(progress.size(), 3u);
  EXPECT_EQ(progress[progress.size() - 3], "asking QEMU to quit");
  EXPECT_EQ(progress[progress.size() - 2], "sending SIGTERM to QEMU");
  EXPECT_EQ(progress[progress.size() - 1], "sending SIGKILL to QEMU");
  auto steps = journal_events();
  EXPECT_EQ(std::count(steps.begin(), steps.end(), "QVM_DOWN_STEP"), 4);
}

TEST_F(SupervisorTest, KillIsImmediateAndReportedAsForced) {
  define();
  fake_qemu_ = kIgnoresTerm;
  server_->expect("cont");
  start();
  ASSERT_TRUE(testing::eventually([&] { return notified("ready"); }, 10s));
  auto result = control_request(store_.paths("sup").runtime_dir / "control.sock", {{"op", "kill"}}, 10s);
  EXPECT_EQ(result["ok"], true);
  EXPECT_EQ(finish(), 0);
  EXPECT_EQ(status().reason, "host request (forced)");
}

TEST_F(SupervisorTest, QemuThatDiesDuringStartFailsTheStartWithItsLog) {
  define();
  fake_qemu_ = kFailsAtOnce;
  server_.reset();
  server_ = std::make_unique<FakeQmpServer>(FakeQmpServer::Options().without_greeting());
  start();
  EXPECT_EQ(finish(), 1);
  std::lock_guard guard(mutex_);
  nlohmann::json failed;
  std::string stored_then;
  for (std::size_t i = 0; i < notices_.size(); ++i) {
    if (notices_[i].value("phase", "") == "failed") {
      failed = notices_[i];
      stored_then = stored_at_notice_[i];
    }
  }
  ASSERT_FALSE(failed.is_null());
  // `qvm up` fails only once state.json says why: a `qvm status` right after agrees.
  EXPECT_EQ(stored_then, "start-failed");
  EXPECT_NE(failed["error"].get<std::string>().find("exited with code 1 during start"), std::string::npos)
      << failed;
  EXPECT_NE(failed["error"].get<std::string>().find("no such device"), std::string::npos) << failed;
  VmStatus s = *store_.read_status("sup");
  EXPECT_EQ(s.state, VmState::crashed);
  EXPECT_EQ(s.reason_code, "start-failed");
}

TEST_F(SupervisorTest, AutoAccelFallsBackToTcgOnceWhenQemuDiesOnKvm) {
  define();
  kvm_usable_ = true;
  kvm_qemu_ = kAbortsOnKvm;
  server_->expect("cont");
  start();
  ASSERT_TRUE(testing::eventually([&] { return notified("ready"); }, 10s));
  {
    std::lock_guard guard(mutex_);
    ASSERT_EQ(argvs_.size(), 2u);
    EXPECT_NE(std::find(argvs_[0].begin(), argvs_[0].end(), "kvm"), argvs_[0].end());
    EXPECT_NE(std::find(argvs_[1].begin(), argvs_[1].end(), "tcg"), argvs_[1].end());
    std::string warning;
    for (const auto& n : notices_) {
      if (n.value("phase", "") == "warning") warning = n.value("message", "");
    }
    EXPECT_NE(warning.find("KVM is not usable (QEMU killed by signal 6 (SIGABRT) on it: failed to set MSR "
                           "0x10a to 0x69)"),
              std::string::npos)
        << warning;
  }
  EXPECT_EQ(status().accel, "tcg");
  EXPECT_EQ(status().state, VmState::running);
  EXPECT_TRUE(journal_has("QVM_KVM_FALLBACK"));
  ::kill(*status().pid, SIGKILL);
  finish();
}

TEST_F(SupervisorTest, KvmStatedInTheProfileNeverFallsBack) {
  define("accel = \"kvm\"\n");
  kvm_usable_ = true;
  kvm_qemu_ = kAbortsOnKvm;
  server_.reset();
  server_ = std::make_unique<FakeQmpServer>(FakeQmpServer::Options().without_greeting());
  start();
  EXPECT_EQ(finish(), 1);
  std::lock_guard guard(mutex_);
  EXPECT_EQ(argvs_.size(), 1u);
  EXPECT_EQ(store_.read_status("sup")->reason, "start failed: QEMU killed by signal 6 (SIGABRT)");
}

TEST_F(SupervisorTest, GuestPanicIsACrashOfItsOwnKind) {
  define();
  server_->expect("cont");
  start();
  ASSERT_TRUE(testing::eventually([&] { return notified("ready"); }, 10s));
  server_->send_event("GUEST_PANICKED", {{"action", "poweroff"}});
  server_->send_event("SHUTDOWN", {{"guest", true}, {"reason", "guest-panic"}});
  ASSERT_TRUE(testing::eventually([&] { return journal_has("SHUTDOWN"); }, 5s));
  ::kill(*status().pid, SIGTERM);
  EXPECT_EQ(finish(), 1);
  EXPECT_EQ(status().reason, "guest panic");
  EXPECT_EQ(status().state, VmState::crashed);
}

TEST_F(SupervisorTest, OnFailureRestartsACrashedVmAndJournalsIt) {
  define("[shutdown]\nrestart = \"on-failure\"\n");
  server_->expect("cont");
  server_->expect("cont");
  start();
  ASSERT_TRUE(testing::eventually([&] { return notified("ready"); }, 10s));
  const int first_pid = *status().pid;
  // The next QEMU needs its monitor socket again.
  fs::remove(store_.paths("sup").supervisor_qmp());
  ::kill(first_pid, SIGKILL);
  ASSERT_TRUE(testing::eventually(
      [&] { auto s = status(); return s.restarts == 1 && s.state == VmState::running && s.pid && *s.pid != first_pid; },
      10s));
  EXPECT_TRUE(journal_has("QVM_RESTART"));
  // A host stop is never followed by a restart.
  auto result = control_request(store_.paths("sup").runtime_dir / "control.sock", {{"op", "kill"}}, 10s);
  EXPECT_EQ(result["ok"], true);
  EXPECT_EQ(finish(), 0);
  EXPECT_EQ(status().restarts, 1);
  EXPECT_EQ(status().state, VmState::stopped);
}

TEST_F(SupervisorTest, SecondSupervisorForTheSameVmIsRefused) {
  define();
  server_->expect("cont");
  start();
  ASSERT_TRUE(testing::eventually([&] { return notified("ready"); }, 10s));
  boost::asio::io_context io;
  Options options;
  options.name = "sup";
  Supervisor second(io, store_, options, environment());
  try {
    second.run();
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already has a supervisor"), std::string::npos) << e.what();
  }
  {
    std::lock_guard guard(mutex_);
    EXPECT_EQ(argvs_.size(), 1u) << "a second QEMU was started";
  }
  ::kill(*status().pid, SIGKILL);
  finish();
}

// ---- a full disk ---------------------------------------------------------------------

class FullDiskSupervisorTest : public SupervisorTest {
 protected:
  void TearDown() override {
    // A supervisor that died leaves its QEMU: never let it outlive the test.
    disk_full_ = false;
    {
      std::lock_guard guard(mutex_);
      for (int pid : spawned_pids_) {
        if (process_alive(pid)) ::kill(pid, SIGKILL);
      }
    }
    if (!thread_.joinable()) return;
    if (exit_code_future_.wait_for(20s) == std::future_status::ready) {
      thread_.join();
    } else {
      thread_.detach();
    }
  }

  bool supervisor_ended() {
    return exit_code_future_.wait_for(0s) == std::future_status::ready;
  }

  int qemu_pid() {
    std::lock_guard guard(mutex_);
    return spawned_pids_.empty() ? 0 : spawned_pids_.back();
  }

  nlohmann::json journal_entry(const std::string& name) {
    auto text = store::read_file_if_exists(store_.paths("sup").state_dir / "events.jsonl").value_or("");
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      auto entry = nlohmann::json::parse(line);
      if (entry["event"] == name) return entry;
    }
    return nullptr;
  }

  int finish_full_disk() {
    EXPECT_EQ(exit_code_future_.wait_for(20s), std::future_status::ready) << "the supervisor did not end";
    thread_.join();
    return exit_code_future_.get();
  }

  std::future<int> exit_code_future_ = exit_code_.get_future();
};

TEST_F(FullDiskSupervisorTest, AFailedSaveKeepsTheSupervisorAndQemuAndIsRetriedUntilItLands) {
  define();
  server_->expect("cont");
  start();
  ASSERT_TRUE(testing::eventually([&] { return notified("ready"); }, 10s));
  disk_full_ = true;
  server_->send_event("STOP");
  ASSERT_TRUE(testing::eventually([&] { return journal_has("STOP"); }, 5s));
  // The failure is in the journal, with the reason.
  ASSERT_TRUE(testing::eventually([&] { return journal_has("QVM_SAVE_FAILED"); }, 5s));
  EXPECT_NE(journal_entry("QVM_SAVE_FAILED")["data"].value("error", "").find("No space left on device"),
            std::string::npos);
  // Nothing died: the supervisor answers and QEMU runs; state.json still says what it said.
  EXPECT_FALSE(supervisor_ended());
  EXPECT_TRUE(process_alive(qemu_pid()));
  auto ping = control_request(store_.paths("sup").runtime_dir / "control.sock", {{"op", "ping"}}, 5s);
  EXPECT_EQ(ping["ok"], true);
  EXPECT_EQ(status().state, VmState::running);
  // Space comes back: the paused state reaches the disk without another event.
  disk_full_ = false;
  ASSERT_TRUE(testing::eventually([&] { return status().state == VmState::paused; }, 10s));
  EXPECT_TRUE(journal_has("QVM_SAVE_RECOVERED"));
  EXPECT_FALSE(supervisor_ended());
  ::kill(qemu_pid(), SIGKILL);
  EXPECT_EQ(finish_full_disk(), 1);
  EXPECT_EQ(status().reason_code, "crash-signal");
}

TEST_F(FullDiskSupervisorTest, AStartThatCannotRecordQemuFailsAndLeavesNoQemu) {
  define();
  disk_full_ = true;
  start();
  EXPECT_EQ(finish_full_disk(), 1);
  ASSERT_NE(qemu_pid(), 0);
  EXPECT_FALSE(process_alive(qemu_pid())) << "QEMU was left running without a supervisor";
  std::string error;
  {
    std::lock_guard guard(mutex_);
    for (const auto& n : notices_) {
      if (n.value("phase", "") == "failed") error = n.value("error", "");
    }
  }
  EXPECT_NE(error.find("No space left on device"), std::string::npos) << error;
  EXPECT_NE(error.find("state.json"), std::string::npos) << error;
  // state.json still says what it said before: a stopped VM.
  EXPECT_EQ(status().state, VmState::stopped);
}

TEST_F(FullDiskSupervisorTest, DownIsRefusedWhileTheStateCannotBeRecordedAndWorksAfter) {
  define();
  server_->expect("cont");
  start();
  ASSERT_TRUE(testing::eventually([&] { return notified("ready"); }, 10s));
  disk_full_ = true;
  nlohmann::json refused = down(30);
  EXPECT_EQ(refused["ok"], false) << refused;
  const std::string error = refused.value("error", "");
  EXPECT_NE(error.find("No space left on device"), std::string::npos) << error;
  EXPECT_NE(error.find("qvm kill"), std::string::npos) << error;
  EXPECT_TRUE(process_alive(qemu_pid()));
  EXPECT_FALSE(supervisor_ended());
  disk_full_ = false;
  server_->expect("quit");
  nlohmann::json stopped = down(30, true);
  EXPECT_EQ(stopped["ok"], true) << stopped;
  EXPECT_EQ(finish_full_disk(), 0);
  EXPECT_EQ(status().state, VmState::stopped);
  EXPECT_EQ(status().reason, "host request");
}

TEST_F(FullDiskSupervisorTest, AQemuThatEndsWhileTheDiskIsFullIsRecordedOnceSpaceIsBack) {
  define();
  server_->expect("cont");
  start();
  ASSERT_TRUE(testing::eventually([&] { return notified("ready"); }, 10s));
  disk_full_ = true;
  const int pid = qemu_pid();
  ::kill(pid, SIGKILL);
  ASSERT_TRUE(testing::eventually([&] { return journal_has("QVM_EXIT"); }, 5s));
  ASSERT_TRUE(testing::eventually([&] { return journal_has("QVM_SAVE_FAILED"); }, 5s));
  // state.json says running: the supervisor stays until it can say otherwise.
  EXPECT_EQ(status().state, VmState::running);
  EXPECT_FALSE(supervisor_ended());
  auto ping = control_request(store_.paths("sup").runtime_dir / "control.sock", {{"op", "ping"}}, 5s);
  EXPECT_EQ(ping["ok"], true);
  disk_full_ = false;
  EXPECT_EQ(finish_full_disk(), 1);
  EXPECT_EQ(status().state, VmState::crashed);
  EXPECT_EQ(status().exit_signal, SIGKILL);
}

TEST_F(SupervisorTest, AnIoErrorPauseSaysWhichDisk) {
  define();
  server_->expect("cont");
  start();
  ASSERT_TRUE(testing::eventually([&] { return notified("ready"); }, 10s));
  // What QEMU sends for werror=enospc on a disk attached with -blockdev: no device name,
  // the node name of the disk's format node, then STOP.
  server_->send_event("BLOCK_IO_ERROR", {{"device", ""},
                                         {"node-name", "disk1-format"},
                                         {"operation", "write"},
                                         {"action", "stop"},
                                         {"nospace", true},
                                         {"reason", "No space left on device"}});
  server_->send_event("STOP");
  ASSERT_TRUE(testing::eventually([&] { return status().state == VmState::paused; }, 5s));
  EXPECT_EQ(status().reason, "I/O error on disk1");
  EXPECT_EQ(status().reason_code, "io-error");
  server_->send_event("RESUME");
  ASSERT_TRUE(testing::eventually([&] { return status().state == VmState::running; }, 5s));
  // After a snapshot the disk runs on its overlay's node.
  server_->send_event("BLOCK_IO_ERROR", {{"device", ""},
                                         {"node-name", "disk0-s3"},
                                         {"operation", "read"},
                                         {"action", "stop"},
                                         {"nospace", false},
                                         {"reason", "Input/output error"}});
  server_->send_event("STOP");
  ASSERT_TRUE(testing::eventually([&] { return status().state == VmState::paused; }, 5s));
  EXPECT_EQ(status().reason, "I/O error on disk0");
  server_->send_event("RESUME");
  ASSERT_TRUE(testing::eventually([&] { return status().state == VmState::running; }, 5s));
  // An error QEMU only reported to the guest does not explain a pause that follows.
  server_->send_event("BLOCK_IO_ERROR", {{"device", ""},
                                         {"node-name", "disk0-format"},
                                         {"operation", "write"},
                                         {"action", "report"},
                                         {"nospace", false},
                                         {"reason", "Input/output error"}});
  server_->send_event("STOP");
  ASSERT_TRUE(testing::eventually([&] { return status().state == VmState::paused; }, 5s));
  EXPECT_EQ(status().reason, "paused");
  EXPECT_EQ(status().reason_code, "paused");
  ::kill(*status().pid, SIGKILL);
  finish();
}

// What later proves that a pid is this QEMU: its start time, boot, binary and user.
TEST_F(SupervisorTest, RecordsTheIdentityOfTheQemuItStarted) {
  define();
  server_->expect("cont");
  start();
  ASSERT_TRUE(testing::eventually([&] { return notified("ready"); }, 10s));
  VmStatus s = status();
  ASSERT_TRUE(s.pid);
  ASSERT_TRUE(s.qemu);
  const auto facts = process::read_process_facts(*s.pid);
  ASSERT_TRUE(facts);
  EXPECT_EQ(s.qemu->start_time, facts->start_time);
  EXPECT_EQ(s.qemu->exe, facts->exe);
  EXPECT_EQ(s.qemu->uid, ::geteuid());
  EXPECT_EQ(s.qemu->boot_id, process::read_boot_id());
  EXPECT_TRUE(is_vm_qemu(*s.pid, s.qemu));
  control_request(store_.paths("sup").runtime_dir / "control.sock", {{"op", "kill"}}, 10s);
  EXPECT_EQ(finish(), 0);
  EXPECT_FALSE(status().qemu) << "the identity of a QEMU that has exited is not kept";
}

// The supervisor keeps the state in memory: a state.json damaged while it runs is
// rewritten the next time anyone asks it (and on its next change anyway).
TEST_F(SupervisorTest, ABrokenStateFileIsRewrittenWhenTheSupervisorIsAsked) {
  define();
  server_->expect("cont");
  start();
  ASSERT_TRUE(testing::eventually([&] { return notified("ready"); }, 10s));
  const VmStatus before = status();
  const fs::path file = store_.paths("sup").state_dir / "state.json";
  for (const std::string damage : {"garbage", "{\"name\": \"sup\", \"st", "{\"name\": \"../x\"}"}) {
    std::ofstream(file) << damage;
    VmStatus seen = reconcile_status(store_, "sup");
    EXPECT_EQ(seen.state, VmState::running) << damage;
    EXPECT_EQ(seen.reason_code, "state-unreadable") << damage;
    EXPECT_NE(seen.reason.find(file.string() + " is broken: "), std::string::npos) << seen.reason;
    std::string broken;
    auto repaired = store_.read_status("sup", &broken);
    EXPECT_EQ(broken, "") << damage;
    EXPECT_EQ(repaired->state, VmState::running);
    EXPECT_EQ(repaired->pid, before.pid);
    EXPECT_EQ(repaired->qemu, before.qemu);
  }
  EXPECT_FALSE(fs::exists(dir_ / "state" / "x"));
  control_request(store_.paths("sup").runtime_dir / "control.sock", {{"op", "kill"}}, 10s);
  EXPECT_EQ(finish(), 0);
}

// Re-attaching to a pid whose process only copied the VM's -uuid: refused, never signalled.
TEST_F(SupervisorTest, AttachRefusesAProcessThatOnlyCopiedTheCommandLine) {
  define();
  VmStatus stored = status();
  process::Process impostor = process::Process::spawn(
      {{"sh", "-c", "sleep 60; :", "qemu-system-x86_64", "-uuid", stored.uuid}});
  stored.state = VmState::running;
  stored.pid = impostor.pid();
  store_.write_status(stored);
  Options options;
  options.name = "sup";
  options.timings = fast_timings();
  options.attach_pid = impostor.pid();
  options.notify = [this](const nlohmann::json& message) {
    std::lock_guard guard(mutex_);
    notices_.push_back(message);
  };
  thread_ = std::thread([this, options] {
    boost::asio::io_context io;
    Supervisor supervisor(io, store_, options, environment());
    exit_code_.set_value(supervisor.run());
  });
  EXPECT_EQ(finish(), 1);
  EXPECT_TRUE(notified("failed"));
  EXPECT_EQ(status().reason_code, "vanished");
  EXPECT_FALSE(impostor.poll()) << "the supervisor signalled a process that is not its QEMU";
  impostor.send_signal(SIGKILL);
  impostor.wait(5000);
}

}  // namespace
}  // namespace qvm::supervisor
