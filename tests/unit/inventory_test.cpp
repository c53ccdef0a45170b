// The library's view of a defined VM, without QEMU: what it reads back from the VM's folder.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <fstream>
#include <future>
#include <thread>

#include "process/child.hpp"
#include "qvm/profile.hpp"
#include "qvm/vm.hpp"
#include "store/files.hpp"
#include "store/layout.hpp"
#include "store/vm_store.hpp"
#include "supervisor/control.hpp"
#include "supervisor/launch.hpp"
#include "support/temp_dir.hpp"
#include "support/test_guest.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class EverythingExists : public FileChecker {
 public:
  bool exists(const fs::path&) const override { return true; }
};

// events.jsonl is appended line by line; a full disk can cut a line short, and people edit
// files. Neither may make journal() or wait_for_event() throw.
TEST(InventoryTest, JournalSkipsLinesThatAreNotEvents) {
  testing::TempDir dir;
  auto inventory = Inventory::open(dir / "state");
  EverythingExists files;
  Vm vm = inventory->define(parse_profile("name = \"j\"\n", dir / "j.toml", {{}, std::nullopt, &files}));
  std::ofstream(dir / "state" / "vms" / "j" / "events.jsonl")
      << R"({"event": "QVM_START", "data": {}})" << "\n"
      << "5\n"
      << R"(["QVM_READY"])" << "\n"
      << R"({"event": 7})" << "\n"
      << R"({"no": "event"})" << "\n"
      << R"({"event": "QVM_READY", "data": {"how": "QMP ready"}})" << "\n"
      << R"({"event": "QVM_EX)";

  const auto entries = vm.journal();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0]["event"], "QVM_START");
  EXPECT_EQ(entries[1]["event"], "QVM_READY");
  EXPECT_EQ(vm.wait_for_event("QVM_READY", 0, 0ms).value_or(nullptr)["data"]["how"], "QMP ready");
  EXPECT_FALSE(vm.wait_for_event("QVM_EXIT", 0, 0ms));
}


// A process that is not the VM's QEMU but carries its `-uuid` on the command line, as any
// user can arrange. Not a child that exec's away: the shell keeps running with that argv.
process::Process impostor(const std::string& uuid) {
  return process::Process::spawn({{"sh", "-c", "sleep 60; :", "qemu-system-x86_64", "-uuid", uuid}});
}

bool alive(process::Process& process) { return !process.poll(); }

class InventoryStateTest : public ::testing::Test {
 protected:
  Vm define(const std::string& name) {
    EverythingExists files;
    return inventory_->define(parse_profile("name = \"" + name + "\"\n", dir_ / (name + ".toml"), {{}, std::nullopt, &files}));
  }
  fs::path state_file(const std::string& name) { return dir_ / "state" / "vms" / name / "state.json"; }
  nlohmann::json stored(const std::string& name) {
    return nlohmann::json::parse(*store::read_file_if_exists(state_file(name)));
  }
  void store_json(const std::string& name, const nlohmann::json& json) {
    std::ofstream(state_file(name)) << json.dump(2) << "\n";
  }

  testing::TempDir dir_;
  std::shared_ptr<Inventory> inventory_ = Inventory::open(dir_ / "state");
  // The store the inventory opens: the same folders, the same runtime root.
  store::VmStore store_{dir_ / "state", store::runtime_root(store::current_environment())};
};

// A fake /proc: /proc/PID/{stat,status,exe} and the boot id, as the kernel lays them out.
class FakeProc {
 public:
  explicit FakeProc(const testing::TempDir& dir) : root_(dir / "proc") {
    dir.write("proc/sys/kernel/random/boot_id", "0b3f5c1e-1111-4222-8333-944455556666\n");
  }
  void add(int pid, const std::string& comm, std::uint64_t start_time, const fs::path& exe, unsigned uid) {
    const fs::path dir = root_ / std::to_string(pid);
    fs::create_directories(dir);
    std::ofstream(dir / "stat") << pid << " (" << comm << ") S 1 " << pid << " " << pid
                                << " 0 -1 4194560 2461 0 0 0 3 1 0 0 20 0 1 0 " << start_time
                                << " 10735616 400 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
    std::ofstream(dir / "status") << "Name:\t" << comm << "\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t" << pid
                                  << "\nUid:\t" << uid << "\t" << uid << "\t" << uid << "\t" << uid << "\n";
    fs::create_symlink(exe, dir / "exe");
  }
  const fs::path& root() const { return root_; }

 private:
  fs::path root_;
};

TEST_F(InventoryStateTest, IsVmQemuNeedsStartTimeBootIdExecutableAndUser) {
  FakeProc proc(dir_);
  const unsigned me = ::geteuid();
  const unsigned other = me + 4242;
  // A command name with spaces and parentheses must not shift the fields.
  proc.add(100, "qemu (x) y", 777, "/usr/bin/qemu-system-x86_64", other);
  proc.add(101, "qemu", 778, "/usr/bin/qemu-system-x86_64 (deleted)", other);
  const QemuIdentity identity{777, "0b3f5c1e-1111-4222-8333-944455556666", "/usr/bin/qemu-system-x86_64", other};
  EXPECT_TRUE(supervisor::is_vm_qemu(100, identity, proc.root()));

  auto changed = [&](auto change) {
    QemuIdentity copy = identity;
    change(copy);
    return supervisor::is_vm_qemu(100, copy, proc.root());
  };
  EXPECT_FALSE(changed([](QemuIdentity& i) { i.start_time = 776; })) << "a later process with the same pid";
  EXPECT_FALSE(changed([](QemuIdentity& i) { i.boot_id = "a-boot-before-a-reboot"; })) << "same numbers, an earlier boot";
  EXPECT_FALSE(changed([](QemuIdentity& i) { i.exe = "/usr/bin/sleep"; }));
  EXPECT_FALSE(changed([&](QemuIdentity& i) { i.uid = other + 1; })) << "another user's process";
  EXPECT_FALSE(supervisor::is_vm_qemu(100, std::nullopt, proc.root())) << "no record, nothing proven";
  EXPECT_FALSE(supervisor::is_vm_qemu(102, identity, proc.root())) << "no such process";
  EXPECT_FALSE(supervisor::is_vm_qemu(0, identity, proc.root()));

  // The binary replaced by a package upgrade while QEMU runs is still QEMU's.
  QemuIdentity upgraded = identity;
  upgraded.start_time = 778;
  EXPECT_TRUE(supervisor::is_vm_qemu(101, upgraded, proc.root()));
}

TEST_F(InventoryStateTest, IdentityOfARealProcessProvesItAndOnlyIt) {
  process::Process child = process::Process::spawn({{"sleep", "60"}});
  const auto identity = supervisor::identify_qemu(child.pid(), Profile{});
  ASSERT_TRUE(identity);
  EXPECT_EQ(identity->uid, ::geteuid());
  EXPECT_EQ(identity->exe.filename(), fs::path("sleep"));
  EXPECT_TRUE(supervisor::is_vm_qemu(child.pid(), identity));
  process::Process second = process::Process::spawn({{"sleep", "60"}});
  EXPECT_FALSE(supervisor::is_vm_qemu(second.pid(), identity)) << "same program, another process";
  child.send_signal(SIGKILL);
  child.wait(5000);
  second.send_signal(SIGKILL);
  second.wait(5000);
  EXPECT_FALSE(supervisor::is_vm_qemu(child.pid(), identity)) << "gone";
}

// The attack: the pid of any process that copied the VM's -uuid, written into state.json of
// a VM whose supervisor is gone. kill and status must not take it for the VM's QEMU.
TEST_F(InventoryStateTest, AProcessWithACopiedCommandLineIsNeitherKilledNorShown) {
  Vm vm = define("vm");
  nlohmann::json json = stored("vm");
  // The identity of the VM's real QEMU, long gone; its pid now names someone else.
  process::Process gone = process::Process::spawn({{"sleep", "60"}});
  const auto identity = supervisor::identify_qemu(gone.pid(), Profile{});
  ASSERT_TRUE(identity);
  gone.send_signal(SIGKILL);
  gone.wait(5000);
  process::Process fake = impostor(json["uuid"]);
  json["state"] = "running";
  json["pid"] = fake.pid();
  json["qemu_start_time"] = identity->start_time;
  json["qemu_boot_id"] = identity->boot_id;
  json["qemu_exe"] = identity->exe.string();
  json["qemu_uid"] = identity->uid;
  store_json("vm", json);

  VmStatus killed = vm.kill();
  EXPECT_TRUE(alive(fake)) << "qvm kill signalled a process that only copied the command line";
  EXPECT_EQ(killed.state, VmState::crashed);
  EXPECT_EQ(killed.reason_code, "vanished");
  EXPECT_FALSE(killed.pid);

  store_json("vm", json);
  const auto listed = inventory_->list();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].reason_code, "vanished");
  EXPECT_FALSE(listed[0].pid);

  store_json("vm", json);
  inventory_->remove("vm", true, false);
  EXPECT_TRUE(alive(fake)) << "qvm rm --force signalled a process that only copied the command line";
  EXPECT_FALSE(fs::exists(dir_ / "state" / "vms" / "vm"));
  fake.send_signal(SIGKILL);
  fake.wait(5000);
}

// state.json of an older qvm has no qemu_start_time: its pid proves nothing either way.
TEST_F(InventoryStateTest, AStateFileWithoutTheIdentityProvesNothing) {
  Vm vm = define("old");
  nlohmann::json json = stored("old");
  process::Process fake = impostor(json["uuid"]);
  json["state"] = "running";
  json["pid"] = fake.pid();
  for (const char* key : {"qemu_start_time", "qemu_boot_id", "qemu_exe", "qemu_uid"}) json.erase(key);
  store_json("old", json);
  VmStatus status = vm.status();
  EXPECT_EQ(status.state, VmState::crashed);
  EXPECT_EQ(status.reason_code, "vanished");
  EXPECT_NE(status.reason.find("nothing proves that process " + std::to_string(fake.pid()) +
                               " is this VM's QEMU (state.json has no qemu_start_time"),
            std::string::npos)
      << status.reason;
  vm.kill();
  EXPECT_TRUE(alive(fake));
  fake.send_signal(SIGKILL);
  fake.wait(5000);
}

// Every way state.json can be wrong is reported with its path and what is wrong in it.
TEST_F(InventoryStateTest, BrokenStateFilesAreNamedWithTheirPathAndProblem) {
  Vm vm = define("b");
  const std::string path = state_file("b").string();
  nlohmann::json good = stored("b");
  auto problem = [&](const std::string& text) {
    std::ofstream(state_file("b")) << text;
    VmStatus status = vm.status();
    EXPECT_EQ(status.state, VmState::stopped);
    EXPECT_EQ(status.reason_code, "state-unreadable");
    EXPECT_EQ(status.name, "b");
    EXPECT_EQ(status.state_dir, dir_ / "state" / "vms" / "b");
    return status.reason;
  };
  EXPECT_EQ(problem(""), path + " is broken: it is empty");
  EXPECT_EQ(problem("\x89garbage\x01\x02"), path + " is broken: it is not JSON (cut short, or edited by hand)");
  EXPECT_EQ(problem(good.dump().substr(0, 40)), path + " is broken: it is not JSON (cut short, or edited by hand)");
  EXPECT_EQ(problem("[1, 2]"), path + " is broken: not a JSON object");
  auto with = [&](const char* key, nlohmann::json value) {
    nlohmann::json copy = good;
    copy[key] = std::move(value);
    return copy.dump();
  };
  EXPECT_EQ(problem(with("uuid", 5)), path + " is broken: \"uuid\" is not a string");
  EXPECT_EQ(problem(with("uuid", "x,y=z")), path + " is broken: \"uuid\" is not a UUID");
  EXPECT_EQ(problem(with("pid", "12")), path + " is broken: \"pid\" is not an integer in range");
  EXPECT_EQ(problem(with("cpus", -1)), path + " is broken: \"cpus\" is not an integer in range");
  EXPECT_EQ(problem(with("ready", "yes")), path + " is broken: \"ready\" is not true or false");
  EXPECT_EQ(problem(with("reason", nlohmann::json::array())), path + " is broken: \"reason\" is not a string");
  EXPECT_EQ(problem(with("state", "flying")), path + " is broken: unknown state \"flying\"");
  EXPECT_EQ(problem(with("state_dir", 7)), path + " is broken: \"state_dir\" is not a string");
  nlohmann::json no_name = good;
  no_name.erase("name");
  EXPECT_EQ(problem(no_name.dump()), path + " is broken: \"name\" is missing");
  EXPECT_EQ(problem(with("name", "../other")),
            path + " is broken: its \"name\" is \"../other\", not the folder's name \"b\"");
}

// The name in state.json never picks the folder written to: not a path, not another VM.
TEST_F(InventoryStateTest, TheNameInStateJsonNeverPicksWhereToWrite) {
  Vm a = define("a");
  define("b");
  fs::create_directories(dir_ / "state" / "other");
  const std::string b_before = *store::read_file_if_exists(state_file("b"));
  for (const char* name : {"b", "../other", "../vms/b"}) {
    nlohmann::json json = stored("a");
    json["name"] = name;
    json["state"] = "running";  // no supervisor: status marks it vanished and saves that
    store_json("a", json);
    VmStatus status = a.status();
    EXPECT_EQ(status.name, "a");
    EXPECT_EQ(status.reason_code, "state-unreadable") << name;
    EXPECT_EQ(*store::read_file_if_exists(state_file("b")), b_before) << name;
    EXPECT_FALSE(fs::exists(dir_ / "state" / "other" / "state.json")) << name;
    const auto listed = inventory_->list();
    ASSERT_EQ(listed.size(), 2u);
    EXPECT_EQ(listed[0].name, "a");
    EXPECT_EQ(listed[1].name, "b");
  }
  VmStatus bad;
  bad.name = "../other";
  EXPECT_THROW(store_.write_status(bad), UsageError);
  bad.name = "";
  EXPECT_THROW(store_.write_status(bad), UsageError);
  EXPECT_FALSE(fs::exists(dir_ / "state" / "other" / "state.json"));
}

// What a supervisor looks like from outside: its lock held, a control socket answering.
class FakeSupervisor {
 public:
  FakeSupervisor(const store::VmStore& store, const std::string& name, std::string state = "running")
      : lock_(*store::FileLock::try_acquire(store.supervisor_lock(name), "supervisor pid 1")) {
    store::make_private_dir(store.paths(name).runtime_dir);
    server_ = std::make_unique<supervisor::ControlServer>(
        io_, store.paths(name).runtime_dir / "control.sock",
        [this, state](const supervisor::ControlRequest& request, std::shared_ptr<supervisor::ControlReply> reply) {
          requests_.push_back(request);
          if (request.op == "ping") return reply->finish({{"ok", true}, {"supervisor_pid", 4321}, {"pid", 1234}, {"state", state}});
          reply->finish({{"ok", true}, {"step", "acpi"}, {"elapsed_ms", 5}, {"state", "stopped"}});
        });
    thread_ = std::thread([this] { io_.run(); });
  }
  ~FakeSupervisor() {
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }
  // What it was asked, oldest first; stops it.
  std::vector<supervisor::ControlRequest> requests() {
    io_.stop();
    if (thread_.joinable()) thread_.join();
    return requests_;
  }

 private:
  store::FileLock lock_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ = boost::asio::make_work_guard(io_);
  std::unique_ptr<supervisor::ControlServer> server_;
  std::vector<supervisor::ControlRequest> requests_;
  std::thread thread_;
};

// A live supervisor is asked when state.json is broken: the VM runs, and says so.
TEST_F(InventoryStateTest, ABrokenStateFileOfASupervisedVmAsksTheSupervisor) {
  Vm vm = define("live");
  FakeSupervisor supervisor(store_, "live", "paused");
  std::ofstream(state_file("live")) << "{\"name\": \"live\", \"uu";
  VmStatus status = vm.status();
  EXPECT_EQ(status.state, VmState::paused);
  EXPECT_EQ(status.reason_code, "state-unreadable");
  EXPECT_EQ(status.pid.value_or(0), 1234);
  EXPECT_EQ(status.supervisor_pid.value_or(0), 4321);
  EXPECT_EQ(status.reason, state_file("live").string() +
                               " is broken: it is not JSON (cut short, or edited by hand); its supervisor "
                               "(pid 4321) is alive and rewrites the file");
  DownResult down = vm.down(std::chrono::seconds(7));
  EXPECT_EQ(down.step, "acpi");
  const auto requests = supervisor.requests();
  const auto sent = std::find_if(requests.begin(), requests.end(), [](const auto& r) { return r.op == "down"; });
  ASSERT_NE(sent, requests.end());
  EXPECT_EQ(sent->timeout, std::chrono::seconds(7));
}

// A broken stored profile must not keep a running VM from stopping.
TEST_F(InventoryStateTest, DownWithABrokenStoredProfileUsesTheDefaultTimeoutAndSaysSo) {
  Vm vm = define("p");
  nlohmann::json json = stored("p");
  json["state"] = "running";
  store_json("p", json);
  const fs::path profile = dir_ / "state" / "vms" / "p" / "profile.toml";
  std::ofstream(profile) << "name = \"p\"\nmemory = ";
  FakeSupervisor supervisor(store_, "p");
  DownResult down = vm.down();
  EXPECT_EQ(down.step, "acpi");
  EXPECT_NE(down.warning.find(profile.string()), std::string::npos) << down.warning;
  EXPECT_NE(down.warning.find("; shutting down with the default ACPI timeout of 60 s"), std::string::npos)
      << down.warning;
  const auto requests = supervisor.requests();
  const auto sent = std::find_if(requests.begin(), requests.end(), [](const auto& r) { return r.op == "down"; });
  ASSERT_NE(sent, requests.end());
  EXPECT_EQ(sent->timeout, std::chrono::seconds(60));
}

// rm decides on the state it finds once it holds the operation lock, not on what it read
// while an `up` was still starting the VM.
TEST_F(InventoryStateTest, RmWaitsForTheOperationLockBeforeItReadsTheState) {
  define("race");
  std::optional<store::FileLock> op = store_.lock_operations("race", "qvm up");
  std::optional<FakeSupervisor> supervisor;
  auto removal = std::async(std::launch::async, [&] {
    try {
      inventory_->remove("race", false, false);
      return std::string("removed");
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
  });
  // Not a wait for a condition: a head start for rm, so that a rm reading the state before
  // it locks reads "stopped". The test cannot pass wrongly without it, only less often fail.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  nlohmann::json json = stored("race");
  json["state"] = "running";
  store_json("race", json);
  supervisor.emplace(store_, "race");
  op.reset();
  ASSERT_EQ(removal.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(removal.get(), "VM \"race\" is running; stop it first (qvm down race) or use --force");
  EXPECT_TRUE(fs::exists(dir_ / "state" / "vms" / "race" / "profile.toml"));
}

}  // namespace
}  // namespace qvm
