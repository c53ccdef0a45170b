#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "command_line/command_line.hpp"
#include "qvm/error.hpp"
#include "support/temp_dir.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;
const fs::path kSourceDir = QVM_SOURCE_DIR;
constexpr const char* kUuid = "6f1c2a3b-4d5e-8f60-9a1b-2c3d4e5f6071";

// Every file the golden profiles name exists, as far as the validator can tell.
class EverythingExists : public FileChecker {
 public:
  bool exists(const fs::path&) const override { return true; }
};

host::HostInfo golden_host(const std::string& profile_text) {
  host::HostInfo host;
  host.kvm.usable = profile_text.find("# golden: no-kvm") == std::string::npos;
  if (!host.kvm.usable) {
    host.kvm.problem = "/dev/kvm does not exist";
    host.kvm.hint = "load the kvm module";
  }
  host.qemu.binary = "/usr/bin/qemu-system-x86_64";
  host.qemu.major = 7;
  host.qemu.minor = 2;
  host.qemu.has_sandbox = profile_text.find("# golden: no-sandbox") == std::string::npos;
  if (profile_text.find("# golden: no-ovmf") == std::string::npos) {
    host.uefi = host::UefiFirmware{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"};
  }
  return host;
}

RunPaths golden_paths(const std::string& name) {
  return {fs::path("/var/lib/qvm/vms") / name, "/run/user/1000/qvm/0123456789abcdef"};
}

// The argv (one word per line), or "error: ..." when building must fail, then warnings.
std::string render(const fs::path& input, const std::string& dir) {
  std::string text = testing::read_file(input);
  EverythingExists files;
  Profile profile =
      parse_profile(text, fs::path("/qvm") / dir / input.filename(), {{}, std::nullopt, &files});
  std::string out;
  try {
    CommandLine command = build_command_line(profile, golden_host(text), golden_paths(profile.name), kUuid);
    for (const auto& word : command.argv) out += word + "\n";
    for (const auto& warning : command.warnings) out += "warning: " + warning + "\n";
  } catch (const Error& e) {
    out += std::string("error: ") + e.what() + "\n";
  }
  return out;
}

void check_golden_dir(const fs::path& inputs, const std::string& dir, size_t minimum) {
  const fs::path golden = kSourceDir / "tests/data/golden" / dir;
  const bool update = std::getenv("QVM_UPDATE_GOLDEN") != nullptr;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(inputs)) {
    if (entry.path().extension() == ".toml") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  EXPECT_GE(files.size(), minimum) << inputs;
  std::set<std::string> expected_files;
  for (const auto& input : files) {
    SCOPED_TRACE(input.string());
    const fs::path expected = golden / (input.stem().string() + ".argv");
    expected_files.insert(expected.filename().string());
    std::string actual = render(input, dir);
    if (update) {
      fs::create_directories(golden);
      std::ofstream(expected, std::ios::trunc) << actual;
      continue;
    }
    ASSERT_TRUE(fs::exists(expected)) << "no golden file " << expected
                                      << "; run with QVM_UPDATE_GOLDEN=1 and review the diff";
    EXPECT_EQ(actual, testing::read_file(expected))
        << "argv changed; if intended, rerun with QVM_UPDATE_GOLDEN=1 and review the diff";
  }
  // A golden file whose input is gone is a test nobody runs any more.
  if (fs::exists(golden)) {
    for (const auto& entry : fs::directory_iterator(golden)) {
      EXPECT_TRUE(expected_files.count(entry.path().filename().string()))
          << "stale golden file " << entry.path();
    }
  }
}

TEST(CommandLineTest, GoldenArgvForEveryBundledProfile) {
  check_golden_dir(kSourceDir / "profiles", "profiles", 5);
}

TEST(CommandLineTest, GoldenArgvForEdgeCases) {
  check_golden_dir(kSourceDir / "tests/data/command_line", "command_line", 10);
}

TEST(CommandLineTest, CommasAreDoubledSoAValueCannotInjectOptions) {
  EXPECT_EQ(escape_option_value("a,format=raw"), "a,,format=raw");
  EXPECT_EQ(escape_option_value(",,"), ",,,,");
  EXPECT_EQ(escape_option_value("plain"), "plain");
}

TEST(CommandLineTest, ShellQuotingRoundTripsThroughSh) {
  EXPECT_EQ(shell_quote("-machine"), "-machine");
  EXPECT_EQ(shell_quote("q35,accel=kvm"), "q35,accel=kvm");
  EXPECT_EQ(shell_quote(""), "''");
  EXPECT_EQ(shell_quote("console=ttyS0 quiet"), "'console=ttyS0 quiet'");
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
  EXPECT_EQ(shell_join({"qemu", "-append", "a b", "$HOME"}), "qemu -append 'a b' '$HOME'");
}

TEST(CommandLineTest, AutoAccelFallsBackToTcgWithAWarningThatSaysWhy) {
  host::KvmStatus kvm;
  kvm.problem = "no permission to open /dev/kvm (group kvm)";
  kvm.hint = "join the kvm group";
  AccelChoice choice = choose_accel(Accel::automatic, kvm);
  EXPECT_EQ(choice.accel, Accel::tcg);
  ASSERT_TRUE(choice.warning);
  EXPECT_EQ(*choice.warning,
            "KVM is not usable (no permission to open /dev/kvm (group kvm)), running under TCG "
            "emulation, which is much slower; to fix: join the kvm group");
  kvm.usable = true;
  EXPECT_EQ(choose_accel(Accel::automatic, kvm).accel, Accel::kvm);
  EXPECT_FALSE(choose_accel(Accel::automatic, kvm).warning);
}

TEST(CommandLineTest, DemandedKvmThatIsUnusableIsAStartTimeError) {
  host::KvmStatus kvm;
  kvm.problem = "/dev/kvm does not exist";
  kvm.hint = "load the kvm module";
  try {
    choose_accel(Accel::kvm, kvm);
    FAIL() << "expected HostError";
  } catch (const HostError& e) {
    EXPECT_STREQ(e.what(),
                 "accel = \"kvm\" but KVM is not usable: /dev/kvm does not exist; load the kvm "
                 "module (or set accel = \"tcg\" to emulate, much slower)");
  }
  EXPECT_EQ(choose_accel(Accel::tcg, kvm).accel, Accel::tcg);
}

TEST(CommandLineTest, DefaultMacsAreStableLocalAndDistinct) {
  std::string mac0 = default_mac(kUuid, 0);
  EXPECT_EQ(mac0, default_mac(kUuid, 0));
  EXPECT_EQ(mac0.substr(0, 9), "52:54:00:");
  EXPECT_EQ(mac0.size(), 17u);
  EXPECT_NE(mac0, default_mac(kUuid, 1));
  EXPECT_NE(mac0, default_mac("00000000-0000-8000-8000-000000000000", 0));
}

TEST(CommandLineTest, UefiWithoutOvmfNamesThePackage) {
  EverythingExists files;
  Profile profile = parse_profile("name = \"u\"\nfirmware = \"uefi\"\n", "/qvm/u.toml",
                                  {{}, std::nullopt, &files});
  host::HostInfo host = golden_host("# golden: no-ovmf");
  try {
    build_command_line(profile, host, golden_paths("u"), kUuid);
    FAIL() << "expected HostError";
  } catch (const HostError& e) {
    EXPECT_STREQ(e.what(), "firmware = \"uefi\" needs OVMF, which was not found; install the ovmf "
                           "package (or set firmware = \"bios\")");
  }
}

}  // namespace
}  // namespace qvm
