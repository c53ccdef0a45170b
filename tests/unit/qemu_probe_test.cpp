#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "host/host_info.hpp"
#include "qvm/error.hpp"
#include "support/fake_kvm_system.hpp"
#include "support/temp_dir.hpp"

namespace qvm::host {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

constexpr const char* kDebianHelp =
    "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n"
    "Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n"
    "usage: qemu-system-x86_64 [options] [disk_image]\n"
    "-sandbox on[,obsolete=allow|deny][,elevateprivileges=allow|deny|children]\n";

TEST(QemuProbeTest, ParsesVersionAndSandboxSupport) {
  QemuInfo info = parse_qemu_help(kDebianHelp, "/usr/bin/qemu-system-x86_64");
  EXPECT_EQ(info.major, 7);
  EXPECT_EQ(info.minor, 2);
  EXPECT_EQ(info.micro, 22);
  EXPECT_EQ(info.version_text, "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)");
  EXPECT_TRUE(info.has_sandbox);
  EXPECT_EQ(info.binary, "/usr/bin/qemu-system-x86_64");
}

TEST(QemuProbeTest, BuildWithoutSeccompHasNoSandbox) {
  QemuInfo info = parse_qemu_help("QEMU emulator version 8.1.0\nusage: ...\n", "/q");
  EXPECT_FALSE(info.has_sandbox);
  EXPECT_EQ(info.version_text, "8.1.0");
}

TEST(QemuProbeTest, SomethingElseIsNotQemu) {
  try {
    parse_qemu_help("Usage: true [ignored command line arguments]\n", "/bin/true");
    FAIL() << "expected HostError";
  } catch (const HostError& e) {
    EXPECT_STREQ(e.what(),
                 "/bin/true does not look like QEMU: its -help output starts with \"Usage: true "
                 "[ignored command line arguments]\"");
  }
}

TEST(QemuProbeTest, FindsProgramsInPathButNeverInTheCurrentDirectory) {
  TempDir dir;
  dir.write("bin/fake-qemu", "#!/bin/sh\n", fs::perms::owner_all);
  dir.write("bin/not-executable", "", fs::perms::owner_read);
  std::string path_env = "::" + (dir / "nowhere").string() + ":" + (dir / "bin").string();
  EXPECT_EQ(find_program("fake-qemu", path_env), dir / "bin" / "fake-qemu");
  EXPECT_EQ(find_program("not-executable", path_env), std::nullopt);
  EXPECT_EQ(find_program("absent", path_env), std::nullopt);
  EXPECT_EQ(find_program((dir / "bin/fake-qemu").string(), ""), dir / "bin" / "fake-qemu");
  EXPECT_EQ(find_program("", path_env), std::nullopt);
}

TEST(QemuProbeTest, MissingBinaryNamesThePackage) {
  try {
    probe_qemu("/nonexistent/qemu-system-x86_64", [](const auto&) -> ProgramOutput {
      ADD_FAILURE() << "must not run anything";
      return {};
    });
    FAIL() << "expected HostError";
  } catch (const HostError& e) {
    EXPECT_STREQ(e.what(),
                 "QEMU binary \"/nonexistent/qemu-system-x86_64\" not found; install the "
                 "qemu-system-x86 package or set [qemu] binary in the profile");
  }
}

TEST(QemuProbeTest, RunsHelpOnceAndRefusesOldQemu) {
  TempDir dir;
  fs::path qemu = dir.write("qemu", "", fs::perms::owner_all);
  std::vector<std::vector<std::string>> runs;
  auto old_qemu = [&](const std::vector<std::string>& argv) {
    runs.push_back(argv);
    return ProgramOutput{0, "QEMU emulator version 6.2.0 (Debian)\n"};
  };
  EXPECT_THROW(probe_qemu(qemu.string(), old_qemu), HostError);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0], (std::vector<std::string>{qemu.string(), "-help"}));

  QemuInfo info = probe_qemu(qemu.string(), [](const auto&) { return ProgramOutput{0, kDebianHelp}; });
  EXPECT_EQ(info.binary, qemu);
}

TEST(QemuProbeTest, CacheSkipsHelpForTheSameBinaryAndProbesAgainWhenItChanges) {
  TempDir dir;
  const fs::path qemu = dir.write("qemu-system-x86_64", "#!/bin/sh\n", fs::perms::owner_all);
  const fs::path cache = dir / "runtime" / "qemu-probe.json";
  int runs = 0;
  auto help = [&](const auto&) {
    ++runs;
    return ProgramOutput{0, kDebianHelp};
  };
  const QemuInfo first = probe_qemu(qemu.string(), help, cache);
  EXPECT_EQ(runs, 1);
  EXPECT_TRUE(fs::exists(cache));
  const QemuInfo second = probe_qemu(qemu.string(), help, cache);
  EXPECT_EQ(runs, 1) << "the cache answered";
  EXPECT_EQ(second.binary, first.binary);
  EXPECT_EQ(second.version_text, first.version_text);
  EXPECT_EQ(second.has_sandbox, first.has_sandbox);
  EXPECT_EQ(second.major * 100 + second.minor, first.major * 100 + first.minor);

  // An upgraded QEMU (another size) is probed again.
  dir.write("qemu-system-x86_64", "#!/bin/sh\n# 7.2.1\n", fs::perms::owner_all);
  probe_qemu(qemu.string(), help, cache);
  EXPECT_EQ(runs, 2);
  // A corrupt cache, or one others could have written, is not believed.
  dir.write("runtime/qemu-probe.json", "{\"identity\": 3");
  probe_qemu(qemu.string(), help, cache);
  EXPECT_EQ(runs, 3);
  fs::permissions(cache, fs::perms::group_write, fs::perm_options::add);
  probe_qemu(qemu.string(), help, cache);
  EXPECT_EQ(runs, 4);
}

// A file's content and modification time, to show that nothing wrote to it.
std::pair<std::string, long long> seen(const fs::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return {"<missing>", 0};
  return {testing::read_file(file), st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec};
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

// The runtime root may be a symlink someone planted in /tmp: the cache is then written
// neither through it nor in the folder it points at.
TEST(QemuProbeTest, ACacheFolderThatIsASymlinkIsNeitherReadNorWritten) {
  TempDir dir;
  const fs::path qemu = dir.write("qemu-system-x86_64", "#!/bin/sh\n", fs::perms::owner_all);
  const fs::path victim = dir.write("victims/qemu-probe.json", "root's secret\n");
  const auto before = seen(victim);
  fs::create_directory_symlink(dir / "victims", dir / "runtime");
  int runs = 0;
  auto help = [&](const auto&) {
    ++runs;
    return ProgramOutput{0, kDebianHelp};
  };
  EXPECT_EQ(probe_qemu(qemu.string(), help, dir / "runtime" / "qemu-probe.json").version_text,
            "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)");
  probe_qemu(qemu.string(), help, dir / "runtime" / "qemu-probe.json");
  EXPECT_EQ(runs, 2) << "no cache is kept in a folder that is not private";
  EXPECT_EQ(seen(victim), before);
  EXPECT_EQ(names_in(dir / "victims"), std::vector<std::string>{"qemu-probe.json"});
  EXPECT_TRUE(fs::is_symlink(dir / "runtime"));
}

// In a folder others can write to, the old temp name (".tmp" and the pid) was theirs to plant.
TEST(QemuProbeTest, APlantedTempNameInAnOpenCacheFolderIsNotWrittenThrough) {
  TempDir dir;
  const fs::path qemu = dir.write("qemu-system-x86_64", "#!/bin/sh\n", fs::perms::owner_all);
  const fs::path victim = dir.write("victim", "root's secret\n");
  const auto before = seen(victim);
  const fs::path runtime = dir / "runtime";
  fs::create_directory(runtime);
  fs::permissions(runtime, fs::perms::all);
  for (const std::string& temp :
       {".tmp" + std::to_string(::getpid()), ".tmp." + std::to_string(::getpid())}) {
    fs::create_symlink(victim, runtime / ("qemu-probe.json" + temp));
  }
  fs::create_symlink(victim, runtime / "qemu-probe.json");
  const auto planted = names_in(runtime);
  int runs = 0;
  auto help = [&](const auto&) {
    ++runs;
    return ProgramOutput{0, kDebianHelp};
  };
  probe_qemu(qemu.string(), help, runtime / "qemu-probe.json");
  probe_qemu(qemu.string(), help, runtime / "qemu-probe.json");
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(seen(victim), before);
  EXPECT_EQ(names_in(runtime), planted);
  EXPECT_TRUE(fs::is_symlink(runtime / "qemu-probe.json"));
}

// A cache another user wrote could turn the sandbox off; a folder of theirs gets nothing.
TEST(QemuProbeTest, ACacheFolderOfAnotherUserIsNeitherBelievedNorWritten) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a folder to nobody";
  const struct passwd* nobody = ::getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  TempDir dir;
  const fs::path qemu = dir.write("qemu-system-x86_64", "#!/bin/sh\n", fs::perms::owner_all);
  struct stat st {};
  ASSERT_EQ(::stat(qemu.c_str(), &st), 0);
  const std::string identity = qemu.string() + ":" + std::to_string(st.st_dev) + ":" +
                               std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
                               std::to_string(st.st_mtim.tv_sec) + "." +
                               std::to_string(st.st_mtim.tv_nsec);
  const fs::path runtime = dir / "runtime";
  const fs::path forged =
      dir.write("runtime/qemu-probe.json", nlohmann::json{{"identity", identity},
                                                          {"major", 9},
                                                          {"minor", 0},
                                                          {"micro", 0},
                                                          {"version", "9.0.0"},
                                                          {"sandbox", false}}
                                               .dump());
  for (const fs::path& path : {runtime, forged}) {
    ASSERT_EQ(::chown(path.c_str(), nobody->pw_uid, nobody->pw_gid), 0);
  }
  const auto before = seen(forged);
  int runs = 0;
  auto help = [&](const auto&) {
    ++runs;
    return ProgramOutput{0, kDebianHelp};
  };
  const QemuInfo info = probe_qemu(qemu.string(), help, forged);
  EXPECT_EQ(runs, 1);
  EXPECT_TRUE(info.has_sandbox);
  EXPECT_EQ(info.version_text, "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)");
  EXPECT_EQ(seen(forged), before);
  EXPECT_EQ(names_in(runtime), std::vector<std::string>{"qemu-probe.json"});
  ASSERT_EQ(::lstat(forged.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, nobody->pw_uid) << "root wrote a cache into nobody's folder";
}

constexpr const char* kPlainDescriptor = R"({
  "interface-types": ["uefi"],
  "mapping": {"device": "flash",
              "executable": {"filename": "@/code.fd", "format": "raw"},
              "nvram-template": {"filename": "@/vars.fd", "format": "raw"}},
  "targets": [{"architecture": "x86_64", "machines": ["pc-q35-*"]}],
  "features": ["acpi-s3"]
})";

std::string descriptor(const std::string& text, const fs::path& dir) {
  std::string out = text;
  for (auto at = out.find('@'); at != std::string::npos; at = out.find('@')) {
    out.replace(at, 1, dir.string());
  }
  return out;
}

TEST(QemuProbeTest, FirmwareDescriptorsPreferPlainUefiInNameOrder) {
  TempDir dir;
  dir.write("code.fd", "c");
  dir.write("vars.fd", "v");
  dir.write("secure-code.fd", "c");
  std::string secure = descriptor(kPlainDescriptor, dir.path());
  secure.replace(secure.find("code.fd"), 7, "secure-code.fd");
  secure.replace(secure.find("\"acpi-s3\""), 9, "\"acpi-s3\", \"secure-boot\", \"requires-smm\"");
  dir.write("share/40-secure.json", secure);
  dir.write("share/50-broken.json", "{ not json");
  dir.write("share/60-plain.json", descriptor(kPlainDescriptor, dir.path()));
  auto firmware = find_uefi_firmware({dir / "etc", dir / "share"}, dir / "no-fallback");
  ASSERT_TRUE(firmware);
  EXPECT_EQ(firmware->code, dir / "code.fd");
  EXPECT_EQ(firmware->vars_template, dir / "vars.fd");
}

TEST(QemuProbeTest, FirmwareDescriptorWhoseFilesAreMissingIsSkipped) {
  TempDir dir;
  dir.write("share/60-plain.json", descriptor(kPlainDescriptor, dir.path()));
  EXPECT_EQ(find_uefi_firmware({dir / "share"}, dir / "root"), std::nullopt);
  dir.write("root/usr/share/OVMF/OVMF_CODE_4M.fd", "c");
  dir.write("root/usr/share/OVMF/OVMF_VARS_4M.fd", "v");
  auto firmware = find_uefi_firmware({dir / "share"}, dir / "root");
  ASSERT_TRUE(firmware);
  EXPECT_EQ(firmware->code, dir / "root/usr/share/OVMF/OVMF_CODE_4M.fd");
}

TEST(QemuUserTest, NeedsRootAndAnExistingUser) {
  const auto known = [](const std::string& user) { return user == "qemu"; };
  EXPECT_NO_THROW(check_qemu_user("qemu", 0, known));
  try {
    check_qemu_user("qemu", 1000, known);
    FAIL() << "expected HostError";
  } catch (const HostError& e) {
    EXPECT_STREQ(e.what(),
                 "qemu.user = \"qemu\" needs qvm to run as root (QEMU starts as root and then "
                 "drops to that user); remove qemu.user to run QEMU as yourself");
  }
  try {
    check_qemu_user("ghost", 0, known);
    FAIL() << "expected HostError";
  } catch (const HostError& e) {
    EXPECT_STREQ(e.what(),
                 "qemu.user = \"ghost\": no such user on this host; create it (adduser --system "
                 "ghost) or name an existing one");
  }
}

TEST(QemuUserTest, RealLookupFindsRootAndNotANonsenseName) {
  EXPECT_NO_THROW(check_qemu_user("root", 0));
  EXPECT_THROW(check_qemu_user("qvm-no-such-user-x", 0), HostError);
}

// accel = "tcg" never needs KVM: opening /dev/kvm and creating a throwaway VM costs about
// half a millisecond of every start.
TEST(HostProbeTest, KvmIsProbedOnlyWhenTheProfileMayUseIt) {
  TempDir dir;
  const fs::path qemu = dir.write("qemu-system-x86_64", "#!/bin/sh\n", fs::perms::owner_all);
  auto help = [](const auto&) { return ProgramOutput{0, kDebianHelp}; };

  testing::FakeKvmSystem untouched;
  HostInfo tcg = probe_host(qemu.string(), {.kvm = false, .uefi = false}, help, untouched);
  EXPECT_TRUE(untouched.requests.empty());
  EXPECT_EQ(untouched.open_fds, 0);
  EXPECT_FALSE(tcg.kvm.usable);
  EXPECT_EQ(tcg.kvm.problem, "not probed (accel = \"tcg\")");
  EXPECT_EQ(tcg.qemu.binary, qemu);

  testing::FakeKvmSystem probed;
  HostInfo automatic = probe_host(qemu.string(), {.kvm = true, .uefi = false}, help, probed);
  EXPECT_TRUE(automatic.kvm.usable);
  EXPECT_EQ(probed.requests.back(), static_cast<unsigned long>(KVM_CREATE_VM));
}

}  // namespace
}  // namespace qvm::host
