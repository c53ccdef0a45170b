// The supervisor against a fake QEMU: a shell process standing in for QEMU's pid, and a
// FakeQmpServer behind its monitor socket. No QEMU runs here.
#include <gtest/gtest.h>
#include <signal.h>

#include <future>
#include <mutex>
#include <thread>

#include "store/files.hpp"
#include "supervisor/control.hpp"
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
      return process::Process::spawn({fake_qemu_, options.log, true, {}});
    };
    env.now = [] { return std::chrono::system_clock::now(); };
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
      exit_code_.set_value(supervisor.run());
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
};

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
  start();
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

}  // namespace
}  // namespace qvm::supervisor
