#include "store/layout.hpp"

#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <regex>

#include "qvm/error.hpp"
#include "support/temp_dir.hpp"

namespace qvm::store {
namespace {

Environment user_env() {
  Environment env;
  env.uid = 1000;
  env.home = "/home/ada";
  return env;
}

TEST(LayoutTest, StateRootPrecedence) {
  Environment env = user_env();
  EXPECT_EQ(state_root(std::nullopt, env), "/home/ada/.local/state/qvm");
  env.xdg_state_home = "/xdg/state";
  EXPECT_EQ(state_root(std::nullopt, env), "/xdg/state/qvm");
  env.qvm_state_dir = "/srv/qvm";
  EXPECT_EQ(state_root(std::nullopt, env), "/srv/qvm");
  EXPECT_EQ(state_root(std::filesystem::path("/flag/dir/"), env), "/flag/dir/");
}

TEST(LayoutTest, RootDefaultsToVarLib) {
  Environment env;
  env.uid = 0;
  env.home = "/root";
  env.xdg_state_home = "/root/.local/state";
  EXPECT_EQ(state_root(std::nullopt, env), "/var/lib/qvm");
}

TEST(LayoutTest, NoHomeAndNoFlagIsAUsageError) {
  Environment env;
  env.uid = 1000;
  EXPECT_THROW(state_root(std::nullopt, env), UsageError);
}

TEST(LayoutTest, RuntimeRootPrefersAShortXdgRuntimeDir) {
  Environment env = user_env();
  EXPECT_EQ(runtime_root(env), "/tmp/qvm-1000");
  env.xdg_runtime_dir = "/run/user/1000";
  EXPECT_EQ(runtime_root(env), "/run/user/1000/qvm");
  env.xdg_runtime_dir = "/" + std::string(80, 'r');
  EXPECT_EQ(runtime_root(env), "/tmp/qvm-1000");
}

TEST(LayoutTest, SocketPathsStayShortWhateverTheStateRoot) {
  const std::filesystem::path long_root = "/" + std::string(199, 's');
  const std::string long_name(63, 'n');
  RunPaths paths = run_paths(long_root, "/run/user/4294967294/qvm", long_name);
  EXPECT_EQ(paths.state_dir, long_root / "vms" / long_name);
  for (const auto& socket : {paths.supervisor_qmp(), paths.client_qmp(), paths.console_socket(),
                             paths.agent_socket()}) {
    EXPECT_LT(socket.string().size(), 108u) << socket;
  }
}

TEST(LayoutTest, RuntimeDirsDifferPerStateRootAndName) {
  auto a = run_paths("/a", "/tmp/qvm-0", "dev").runtime_dir;
  EXPECT_EQ(a, run_paths("/a", "/tmp/qvm-0", "dev").runtime_dir);
  EXPECT_NE(a, run_paths("/b", "/tmp/qvm-0", "dev").runtime_dir);
  EXPECT_NE(a, run_paths("/a", "/tmp/qvm-0", "dev2").runtime_dir);
  EXPECT_EQ(a.parent_path(), "/tmp/qvm-0");
  EXPECT_EQ(a.filename().string().size(), 16u);
}

TEST(LayoutTest, DerivedUuidIsStableWellFormedAndDistinct) {
  const std::regex v8(R"([0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})");
  std::string uuid = derive_uuid("host-1", "/var/lib/qvm", "dev");
  EXPECT_TRUE(std::regex_match(uuid, v8)) << uuid;
  EXPECT_EQ(uuid, derive_uuid("host-1", "/var/lib/qvm", "dev"));
  EXPECT_NE(uuid, derive_uuid("host-2", "/var/lib/qvm", "dev"));
  EXPECT_NE(uuid, derive_uuid("host-1", "/srv/qvm", "dev"));
  EXPECT_NE(uuid, derive_uuid("host-1", "/var/lib/qvm", "dew"));
}

namespace fs = std::filesystem;

constexpr const char* kRuntimeFix =
    "remove it, or set XDG_RUNTIME_DIR to a private folder (an absolute path of at most 64 "
    "characters)";

std::string runtime_dir_error(const fs::path& runtime_dir) {
  try {
    make_runtime_dir(runtime_dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(LayoutTest, MakeRuntimeDirMakesTheRootAndTheVmFolderPrivate) {
  testing::TempDir shared;
  fs::permissions(shared.path(), fs::perms::all | fs::perms::sticky_bit);
  const fs::path runtime_dir = run_paths("/var/lib/qvm", shared / "qvm", "dev").runtime_dir;
  PrivateDir dir = make_runtime_dir(runtime_dir);
  EXPECT_EQ(dir.path(), runtime_dir);
  for (const fs::path& folder : {runtime_dir.parent_path(), runtime_dir}) {
    struct stat st {};
    ASSERT_EQ(::lstat(folder.c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    EXPECT_EQ(st.st_uid, ::geteuid());
  }
  EXPECT_EQ(runtime_dir_error(runtime_dir), "");
}

// Anyone can make /tmp/qvm-<uid> before its user does; then nothing goes in it.
TEST(LayoutTest, MakeRuntimeDirRefusesARootThatIsASymlinkOrOpenToOthers) {
  testing::TempDir shared;
  fs::permissions(shared.path(), fs::perms::all | fs::perms::sticky_bit);
  testing::TempDir elsewhere;
  const fs::path root = shared / "qvm";
  const fs::path runtime_dir = run_paths("/var/lib/qvm", root, "dev").runtime_dir;

  fs::create_directory_symlink(elsewhere.path(), root);
  EXPECT_EQ(
      runtime_dir_error(runtime_dir),
      root.string() + " is not a directory (a symlink or file is in the way); " + kRuntimeFix);
  EXPECT_TRUE(fs::is_empty(elsewhere.path()));
  fs::remove(root);

  fs::create_directory(root);
  fs::permissions(root, fs::perms::all);
  EXPECT_EQ(runtime_dir_error(runtime_dir),
            root.string() + " can be written by other users (mode 0777); refusing to use it; " +
                kRuntimeFix);
  EXPECT_TRUE(fs::is_empty(root));
}

TEST(LayoutTest, MakeRuntimeDirRefusesARootAnotherUserMade) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a folder to nobody";
  const struct passwd* nobody = ::getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  testing::TempDir shared;
  fs::permissions(shared.path(), fs::perms::all | fs::perms::sticky_bit);
  const fs::path root = shared / "qvm";
  fs::create_directory(root);
  fs::permissions(root, fs::perms::owner_all);
  ASSERT_EQ(::chown(root.c_str(), nobody->pw_uid, nobody->pw_gid), 0);
  const fs::path runtime_dir = run_paths("/var/lib/qvm", root, "dev").runtime_dir;
  EXPECT_EQ(runtime_dir_error(runtime_dir),
            root.string() + " belongs to uid " + std::to_string(nobody->pw_uid) +
                ", not to this user; refusing to use it; " + kRuntimeFix);
  EXPECT_TRUE(fs::is_empty(root));
}

}  // namespace
}  // namespace qvm::store
