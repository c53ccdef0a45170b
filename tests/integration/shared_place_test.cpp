// Another user plants symlinks and folders for every path qvm writes in a shared runtime
// root (made first in a sticky, world-writable folder standing in for /tmp), pointing them
// at files of root's and of a second user's. Their qvm must refuse or avoid every one, and
// nothing outside the runtime root may change. No guest is booted: `qvm up --dry-run` and
// a real `qvm up` that must refuse before QEMU starts are enough.

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "store/layout.hpp"
#include "supervisor/control.hpp"
#include "support/cli_runner.hpp"
#include "support/temp_dir.hpp"
#include "support/test_guest.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr const char* kRuntimeFix =
    "remove it, or set XDG_RUNTIME_DIR to a private folder (an absolute path of at most 64 "
    "characters)";

// Every file and folder under `top` (itself included, symlinks not followed) with its type,
// mode, owner, size, modification time and content or target: what "unchanged" means.
std::map<std::string, std::string> tree(const fs::path& top) {
  std::map<std::string, std::string> entries;
  auto describe = [&](const fs::path& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return;
    std::string text = std::to_string(st.st_mode) + " uid " + std::to_string(st.st_uid) + " size " +
                       std::to_string(st.st_size) + " mtime " + std::to_string(st.st_mtim.tv_sec) +
                       "." + std::to_string(st.st_mtim.tv_nsec) + " ino " +
                       std::to_string(st.st_ino);
    if (S_ISREG(st.st_mode)) text += " content " + testing::read_file(path);
    if (S_ISLNK(st.st_mode)) text += " -> " + fs::read_symlink(path).string();
    entries[path.string()] = text;
  };
  describe(top);
  std::error_code ec;
  if (!fs::is_directory(fs::symlink_status(top, ec))) return entries;
  for (fs::recursive_directory_iterator it(top, ec), end; !ec && it != end; it.increment(ec)) {
    describe(it->path());
  }
  return entries;
}

// What one qvm run printed and returned.
struct QvmRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// A mkdtemp folder outside any test folder, removed with everything in it.
struct OwnedTempDir {
  fs::path path;
  explicit OwnedTempDir(const std::string& prefix) {
    std::string pattern = "/tmp/" + prefix + "XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) path = pattern;
  }
  ~OwnedTempDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

class SharedPlaceIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0)
      GTEST_SKIP() << "needs root to act as other users; this test runs as uid " << ::geteuid();
    // getpwnam's answer lives until the next call.
    const struct passwd* nobody = ::getpwnam("nobody");
    ASSERT_NE(nobody, nullptr);
    attacker_ = {nobody->pw_uid, nobody->pw_gid};
    const struct passwd* daemon = ::getpwnam("daemon");
    ASSERT_NE(daemon, nullptr);
    user_ = {daemon->pw_uid, daemon->pw_gid};
    ASSERT_FALSE(shared_.path.empty());
    ASSERT_FALSE(user_home_.path.empty());
    // /tmp's stand-in: anyone may make entries, only their owner may remove them.
    ASSERT_EQ(::chmod(shared_.path.c_str(), 01777), 0);
    ASSERT_LE(shared_.path.string().size(), 64u) << "qvm ignores a longer XDG_RUNTIME_DIR";
    runtime_root_ = shared_.path / "qvm";

    // Root's side: a state folder, a profile, and victims in a root-only folder.
    root_victim_ = root_home_.write("outside/victim", "root's secret\n");
    root_vdir_ = root_home_ / "outside" / "vdir";
    root_home_.write("outside/vdir/qemu-probe.json", "root's probe-named secret\n");
    root_home_.write("kernel", "not a kernel: QEMU would exit at once\n");
    root_profile_ = root_home_.write("victim.toml", profile_text(root_home_.path()));
    root_state_ = root_home_ / "state";

    // The second user's side, all theirs.
    const fs::path home = user_home_.path;
    for (const char* dir : {"outside", "outside/vdir"}) fs::create_directory(home / dir);
    std::ofstream(home / "outside/victim") << "daemon's secret\n";
    std::ofstream(home / "outside/vdir/qemu-probe.json") << "daemon's probe-named secret\n";
    std::ofstream(home / "kernel") << "not a kernel\n";
    std::ofstream(home / "victim.toml") << profile_text(home);
    for (const fs::path& path :
         {home, home / "outside", home / "outside/vdir", home / "outside/victim",
          home / "outside/vdir/qemu-probe.json", home / "kernel", home / "victim.toml"}) {
      ASSERT_EQ(::chown(path.c_str(), user_.uid, user_.gid), 0) << path;
    }
    user_victim_ = home / "outside/victim";
    user_vdir_ = home / "outside/vdir";
    user_profile_ = home / "victim.toml";
    user_state_ = home / "state";

    root_hash_ = store::run_paths(root_state_, runtime_root_, "victim").runtime_dir.filename();
    user_hash_ = store::run_paths(user_state_, runtime_root_, "victim").runtime_dir.filename();
  }

  static std::string profile_text(const fs::path& home) {
    return "name = \"victim\"\nmemory = \"64MiB\"\naccel = \"tcg\"\n[boot]\nkernel = \"" +
           (home / "kernel").string() + "\"\n";
  }

  struct User {
    uid_t uid = 0;
    gid_t gid = 0;
  };

  // Runs `action` (raw system calls only: it runs in a forked child) as `user`.
  static bool as_user(User user, const std::function<bool()>& action) {
    const pid_t pid = ::fork();
    if (pid < 0) return false;
    if (pid == 0) {
      if (::setgroups(0, nullptr) != 0 || ::setresgid(user.gid, user.gid, user.gid) != 0 ||
          ::setresuid(user.uid, user.uid, user.uid) != 0) {
        ::_exit(2);
      }
      ::_exit(action() ? 0 : 1);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }

  // The attacker makes a world-writable folder of theirs.
  bool plant_dir(const fs::path& dir) {
    const std::string path = dir.string();
    return as_user(attacker_, [&] {
      return ::mkdir(path.c_str(), 0777) == 0 && ::chmod(path.c_str(), 0777) == 0;
    });
  }

  // The attacker makes `link` point at `target`.
  bool plant_link(const fs::path& target, const fs::path& link) {
    const std::string from = target.string();
    const std::string at = link.string();
    return as_user(attacker_, [&] { return ::symlink(from.c_str(), at.c_str()) == 0; });
  }

  // The temp names the probe cache had ("qemu-probe.json.tmp" and the pid), planted in
  // `folder` for the process `pid` that is about to run qvm.
  bool plant_temp_names(const fs::path& folder, pid_t pid, const fs::path& victim) {
    const std::string id = std::to_string(pid);
    return plant_link(victim, folder / ("qemu-probe.json.tmp" + id)) &&
           plant_link(victim, folder / ("qemu-probe.json.tmp." + id));
  }

  // Everything the attacker and the victims can see outside the runtime root's own files.
  std::map<std::string, std::string> world() {
    auto all = tree(root_home_ / "outside");
    all.merge(tree(user_home_.path / "outside"));
    all.merge(tree(shared_.path));
    return all;
  }

  // Runs `qvm --state-dir STATE ARGS` as `user` (root or the second user) with
  // XDG_RUNTIME_DIR the shared folder. `before_exec` gets the pid it will run as, before
  // it runs: the attacker's last chance to plant names that depend on it.
  QvmRun run_qvm(bool as_root, const std::vector<std::string>& args,
                 const std::function<void(pid_t)>& before_exec = {}) {
    const User who = as_root ? User{0, 0} : user_;
    std::vector<std::string> argv{testing::qvm_binary().string(), "--state-dir",
                                  (as_root ? root_state_ : user_state_).string()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<std::string> env{"PATH=/usr/local/bin:/usr/bin:/bin",
                                 "HOME=" + (as_root ? root_home_.path() : user_home_.path).string(),
                                 "XDG_RUNTIME_DIR=" + shared_.path.string()};
    for (const char* name : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"}) {
      if (const char* value = std::getenv(name)) env.push_back(std::string(name) + "=" + value);
    }
    std::vector<char*> argv_c, env_c;
    for (auto& arg : argv) argv_c.push_back(arg.data());
    argv_c.push_back(nullptr);
    for (auto& var : env) env_c.push_back(var.data());
    env_c.push_back(nullptr);
    const std::string out_file = (root_home_ / "run.out").string();
    const std::string err_file = (root_home_ / "run.err").string();

    int go[2];
    if (::pipe2(go, O_CLOEXEC) != 0) return {};
    const pid_t pid = ::fork();
    if (pid < 0) return {};
    if (pid == 0) {
      const int out = ::open(out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      const int err = ::open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      char byte = 0;
      if (out < 0 || err < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0 ||
          ::read(go[0], &byte, 1) != 1 || ::setgroups(0, nullptr) != 0 ||
          ::setresgid(who.gid, who.gid, who.gid) != 0 ||
          ::setresuid(who.uid, who.uid, who.uid) != 0) {
        ::_exit(126);
      }
      ::execve(argv_c[0], argv_c.data(), env_c.data());
      ::_exit(127);
    }
    ::close(go[0]);
    if (before_exec) before_exec(pid);
    const ssize_t written = ::write(go[1], "x", 1);
    ::close(go[1]);
    QvmRun run;
    int status = 0;
    if (!testing::eventually([&] { return ::waitpid(pid, &status, WNOHANG) != 0; }, 120s)) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
    }
    if (written == 1 && WIFEXITED(status)) run.exit_code = WEXITSTATUS(status);
    run.out = testing::read_file(out_file);
    run.err = testing::read_file(err_file);
    return run;
  }

  // `qvm up --dry-run` as root or the second user, with the temp names planted in
  // `temp_folder` (if any) for its pid; checks that it printed the command and that
  // nothing anyone can see changed.
  void expect_dry_run_avoids(bool as_root, const std::optional<fs::path>& temp_folder) {
    std::map<std::string, std::string> before;
    const QvmRun run = run_qvm(
        as_root, {"up", "--dry-run", (as_root ? root_profile_ : user_profile_).string()},
        [&](pid_t pid) {
          if (temp_folder) {
            EXPECT_TRUE(plant_temp_names(*temp_folder, pid, as_root ? root_victim_ : user_victim_));
          }
          before = world();
        });
    EXPECT_EQ(run.exit_code, 0) << run.err;
    EXPECT_EQ(run.out.rfind("/usr/bin/qemu-system-x86_64 -name guest=victim", 0), 0u) << run.out;
    EXPECT_EQ(world(), before) << (as_root ? "root's" : "the second user's")
                               << " dry run changed something";
  }

  // A real `qvm up` as root or the second user: refused with `problem` and the fix, and
  // nothing anyone can see changed.
  void expect_up_refuses(bool as_root, const std::string& problem) {
    const auto before = world();
    const QvmRun run = run_qvm(as_root, {"up", (as_root ? root_profile_ : user_profile_).string()});
    EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
    EXPECT_EQ(run.err,
              "qvm: error: victim: " + runtime_root_.string() + " " + problem + kRuntimeFix + "\n");
    EXPECT_EQ(world(), before) << (as_root ? "root's" : "the second user's")
                               << " up changed something";
  }

  void expect_victims_intact() {
    EXPECT_EQ(testing::read_file(root_victim_), "root's secret\n");
    EXPECT_EQ(testing::read_file(root_vdir_ / "qemu-probe.json"), "root's probe-named secret\n");
    EXPECT_EQ(testing::read_file(user_victim_), "daemon's secret\n");
    EXPECT_EQ(testing::read_file(user_vdir_ / "qemu-probe.json"), "daemon's probe-named secret\n");
  }

  User attacker_;
  User user_;
  testing::TempDir root_home_;
  OwnedTempDir shared_{"qvm-shared-"};
  OwnedTempDir user_home_{"qvm-daemon-"};
  fs::path runtime_root_;
  fs::path root_victim_, root_vdir_, root_profile_, root_state_;
  fs::path user_victim_, user_vdir_, user_profile_, user_state_;
  std::string root_hash_, user_hash_;
};

// The attacker makes the runtime root first, open to all, with every name qvm writes in
// it pointing at the victims' files.
TEST_F(SharedPlaceIntegrationTest,
       ARuntimeRootAnotherUserMadeIsRefusedAndNothingIsWrittenThroughIt) {
  ASSERT_TRUE(plant_dir(runtime_root_));
  ASSERT_TRUE(plant_link(root_victim_, runtime_root_ / "qemu-probe.json"));
  ASSERT_TRUE(plant_dir(runtime_root_ / root_hash_));
  for (const char* name :
       {"control.sock", "supervisor.qmp", "qmp.sock", "console.sock", "agent.sock", "qemu.pid"}) {
    ASSERT_TRUE(plant_link(root_victim_, runtime_root_ / root_hash_ / name));
  }
  ASSERT_TRUE(plant_link(user_vdir_, runtime_root_ / user_hash_));

  expect_dry_run_avoids(true, runtime_root_);
  expect_dry_run_avoids(false, runtime_root_);
  const std::string theirs = "belongs to uid " + std::to_string(attacker_.uid) +
                             ", not to this user; refusing to use it; ";
  expect_up_refuses(true, theirs);
  expect_up_refuses(false, theirs);
  expect_victims_intact();
}

// The runtime root is a symlink to a folder of the victim's that holds a file named like
// the probe cache.
TEST_F(SharedPlaceIntegrationTest, ARuntimeRootThatIsASymlinkIsNeitherFollowedNorWrittenThrough) {
  const std::string symlink = "is not a directory (a symlink or file is in the way); ";
  ASSERT_TRUE(plant_link(root_vdir_, runtime_root_));
  expect_dry_run_avoids(true, std::nullopt);
  expect_up_refuses(true, symlink);
  ASSERT_TRUE(
      as_user(attacker_, [path = runtime_root_.string()] { return ::unlink(path.c_str()) == 0; }));
  ASSERT_TRUE(plant_link(user_vdir_, runtime_root_));
  expect_dry_run_avoids(false, std::nullopt);
  expect_up_refuses(false, symlink);
  expect_victims_intact();
}

// Root's own runtime root left open to everyone: whatever others put in it is not used.
TEST_F(SharedPlaceIntegrationTest, AnOwnRuntimeRootOthersCanWriteToIsRefused) {
  ASSERT_EQ(::mkdir(runtime_root_.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(runtime_root_.c_str(), 0777), 0);
  ASSERT_TRUE(plant_link(root_victim_, runtime_root_ / "qemu-probe.json"));
  ASSERT_TRUE(plant_link(root_vdir_, runtime_root_ / root_hash_));
  expect_dry_run_avoids(true, runtime_root_);
  expect_up_refuses(true, "can be written by other users (mode 0777); refusing to use it; ");
  // The second user meets root's folder: not theirs.
  expect_dry_run_avoids(false, runtime_root_);
  expect_up_refuses(false, "belongs to uid 0, not to this user; refusing to use it; ");
  expect_victims_intact();
}

// Untouched, the shared folder gets a private runtime root and a private cache; another
// user's qvm then finds root's folder there and leaves it alone.
TEST_F(SharedPlaceIntegrationTest, AFreshRuntimeRootIsMadePrivateAndOtherUsersLeaveItAlone) {
  const QvmRun first = run_qvm(true, {"up", "--dry-run", root_profile_.string()});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  struct stat st {};
  ASSERT_EQ(::lstat(runtime_root_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(st.st_uid, 0u);
  ASSERT_EQ(::lstat((runtime_root_ / "qemu-probe.json").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(runtime_root_))
    names.push_back(entry.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"qemu-probe.json"}) << "no temp file is left behind";
  const QvmRun second = run_qvm(true, {"up", "--dry-run", root_profile_.string()});
  EXPECT_EQ(second.out, first.out);

  expect_dry_run_avoids(false, std::nullopt);
  expect_up_refuses(false, "belongs to uid 0, not to this user; refusing to use it; ");
}

// A control socket in a folder another user made may be theirs, answering as a supervisor
// would: qvm does not even connect to it.
TEST_F(SharedPlaceIntegrationTest, AControlSocketInAFolderAnotherUserMadeIsNotAsked) {
  ASSERT_TRUE(plant_dir(runtime_root_));
  ASSERT_TRUE(plant_dir(runtime_root_ / root_hash_));
  const fs::path socket = runtime_root_ / root_hash_ / "control.sock";
  const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strcpy(address.sun_path, socket.c_str());
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  std::string message;
  try {
    supervisor::control_request(socket, {{"op", "down"}}, 2s);
  } catch (const supervisor::SupervisorUnreachable& e) {
    message = e.what();
  } catch (const std::exception& e) {
    message = std::string("not SupervisorUnreachable: ") + e.what();
  }
  EXPECT_EQ(message, "the supervisor at " + socket.string() +
                         " is not in a private folder of this user: " +
                         socket.parent_path().string() + " belongs to uid " +
                         std::to_string(attacker_.uid) + ", not to this user; refusing to use it");
  pollfd entry{listener, POLLIN, 0};
  EXPECT_EQ(::poll(&entry, 1, 0), 0) << "qvm connected to the planted socket";
  ::close(listener);
}

}  // namespace
}  // namespace qvm
