#include "qvm/profile.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "profile/did_you_mean.hpp"
#include "support/temp_dir.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

// A filesystem holding only the given paths; those ending in "/" are folders.
class FakeFiles : public FileChecker {
 public:
  FakeFiles(std::initializer_list<std::string> paths) {
    for (const std::string& path : paths) {
      if (path.ends_with('/')) {
        folders_.insert(fs::path(path).parent_path());
      } else {
        files_.insert(path);
      }
    }
  }
  bool exists(const fs::path& path) const override {
    return files_.count(path) > 0 || folders_.count(path) > 0;
  }
  bool is_directory(const fs::path& path) const override { return folders_.count(path) > 0; }

 private:
  std::set<fs::path> files_;
  std::set<fs::path> folders_;
};

const FakeFiles kFiles{"/vm/vmlinuz",        "/vm/initrd.img",        "/vm/base.qcow2",
                       "/vm/disk.qcow2",     "/vm/images/root.qcow2", "/srv/iso/install.img",
                       "/vm/user-data.yaml", "/vm/src/",              "/home/me/My Project.v2/",
                       "/srv/data/",         "/srv/other/data/",      "/vm/" + std::string(40, 'x') + "/"};

Profile parse(std::string_view text, std::vector<std::string> overrides = {},
              const fs::path& origin = "/vm/dev.toml") {
  ProfileOptions options;
  options.overrides = std::move(overrides);
  options.files = &kFiles;
  return parse_profile(text, origin, options);
}

std::string error_of(std::string_view text, std::vector<std::string> overrides = {},
                     const fs::path& origin = "/vm/dev.toml") {
  try {
    parse(text, std::move(overrides), origin);
  } catch (const ProfileError& error) {
    return error.what();
  }
  return "(no error)";
}

constexpr std::string_view kFullProfile = R"(# every key there is
name = "full-vm.1"
uuid = "6F1C2A3B-4D5E-8F60-9A1B-2C3D4E5F6071"
memory = "2GiB"
cpus = 4
machine = "pc"
accel = "tcg"
cpu = "Skylake-Client,+avx"
firmware = "uefi"
agent = true

[ready]
serial = "login:\\s*$"
agent = true
timeout = 120

[boot]
kernel = "vmlinuz"
initrd = "/vm/initrd.img"
cmdline = "console=ttyS0 root=/dev/vda1"

[[disk]]
path = "images/root.qcow2"
format = "qcow2"
bus = "scsi"
cache = "none"
size = "20GiB"
backing = "base.qcow2"
readonly = false

[[disk]]
path = "/srv/iso/install.img"
bus = "ide"
cache = "directsync"

[[net]]
mode = "user"
model = "e1000e"
mac = "52:54:00:AB:CD:EF"
forward = ["tcp:2222:22", "udp:0.0.0.0:5353:53", "10.0.0.1:8080:80"]

[[net]]
mode = "bridge"
bridge = "virbr0"
model = "rtl8139"

[[net]]
mode = "tap"
ifname = "tap7"
model = "vmxnet3"

[cloud_init]
hostname = "full.example.org"
user = "alice"
ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKx1 me@laptop"]

[[share]]
path = "src"
tag = "code"
readonly = true

[[share]]
path = "/srv/data"

[shutdown]
timeout = 30
restart = "on-failure"

[qemu]
binary = "/opt/qemu/bin/qemu-system-x86_64"
extra_args = ["-d", "guest_errors"]
sandbox = false
)";

TEST(ProfileTest, FullProfileSetsEveryField) {
  const Profile p = parse(kFullProfile);
  EXPECT_EQ(fs::path("/vm/dev.toml"), p.source);
  EXPECT_EQ("full-vm.1", p.name);
  EXPECT_EQ("6f1c2a3b-4d5e-8f60-9a1b-2c3d4e5f6071", p.uuid);
  EXPECT_EQ(2048u, p.memory_mib);
  EXPECT_EQ(4u, p.cpus);
  EXPECT_EQ(Machine::pc, p.machine);
  EXPECT_EQ(Accel::tcg, p.accel);
  EXPECT_EQ("Skylake-Client,+avx", p.cpu);
  EXPECT_EQ(Firmware::uefi, p.firmware);
  EXPECT_TRUE(p.agent);

  ASSERT_TRUE(p.ready);
  EXPECT_EQ("login:\\s*$", p.ready->serial);
  EXPECT_TRUE(p.ready->agent);
  EXPECT_EQ(seconds(120), p.ready->timeout);

  ASSERT_TRUE(p.boot);
  EXPECT_EQ(fs::path("/vm/vmlinuz"), p.boot->kernel);
  EXPECT_EQ(fs::path("/vm/initrd.img"), p.boot->initrd);
  EXPECT_EQ("console=ttyS0 root=/dev/vda1", p.boot->cmdline);

  ASSERT_EQ(2u, p.disks.size());
  EXPECT_EQ(fs::path("/vm/images/root.qcow2"), p.disks[0].path);
  EXPECT_EQ(DiskFormat::qcow2, p.disks[0].format);
  EXPECT_EQ(DiskBus::scsi, p.disks[0].bus);
  EXPECT_EQ(CacheMode::none, p.disks[0].cache);
  EXPECT_EQ(20ull << 30, p.disks[0].size_bytes);
  EXPECT_EQ(fs::path("/vm/base.qcow2"), p.disks[0].backing);
  EXPECT_FALSE(p.disks[0].readonly);
  EXPECT_EQ(fs::path("/srv/iso/install.img"), p.disks[1].path);
  EXPECT_EQ(DiskFormat::raw, p.disks[1].format);  // from the .img extension
  EXPECT_EQ(DiskBus::ide, p.disks[1].bus);
  EXPECT_EQ(CacheMode::directsync, p.disks[1].cache);
  EXPECT_EQ(std::nullopt, p.disks[1].size_bytes);
  EXPECT_EQ(std::nullopt, p.disks[1].backing);

  ASSERT_EQ(3u, p.nets.size());
  EXPECT_EQ(NetMode::user, p.nets[0].mode);
  EXPECT_EQ("e1000e", p.nets[0].model);
  EXPECT_EQ("52:54:00:ab:cd:ef", p.nets[0].mac);
  const std::vector<PortForward> forwards{
      {"tcp", "127.0.0.1", 2222, 22}, {"udp", "0.0.0.0", 5353, 53}, {"tcp", "10.0.0.1", 8080, 80}};
  EXPECT_EQ(forwards, p.nets[0].forward);
  EXPECT_EQ(NetMode::bridge, p.nets[1].mode);
  EXPECT_EQ("virbr0", p.nets[1].bridge);
  EXPECT_EQ("rtl8139", p.nets[1].model);
  EXPECT_EQ(std::nullopt, p.nets[1].mac);
  EXPECT_EQ(NetMode::tap, p.nets[2].mode);
  EXPECT_EQ("tap7", p.nets[2].ifname);
  EXPECT_EQ("vmxnet3", p.nets[2].model);

  ASSERT_TRUE(p.cloud_init);
  EXPECT_EQ("full.example.org", p.cloud_init->hostname);
  EXPECT_EQ("alice", p.cloud_init->user);
  EXPECT_EQ(std::vector<std::string>{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKx1 me@laptop"},
            p.cloud_init->ssh_authorized_keys);
  EXPECT_EQ(std::nullopt, p.cloud_init->user_data);
  const std::vector<Share> shares{{"/vm/src", "code", true}, {"/srv/data", "data", false}};
  EXPECT_EQ(shares, p.shares);

  EXPECT_EQ(seconds(30), p.shutdown.timeout);
  EXPECT_EQ(RestartPolicy::on_failure, p.shutdown.restart);
  EXPECT_EQ("/opt/qemu/bin/qemu-system-x86_64", p.qemu.binary);
  EXPECT_EQ((std::vector<std::string>{"-d", "guest_errors"}), p.qemu.extra_args);
  EXPECT_FALSE(p.qemu.sandbox);
}

TEST(ProfileTest, EmptyProfileGetsEveryDefault) {
  const Profile p = parse("");
  EXPECT_EQ("dev", p.name);  // the file's stem
  EXPECT_EQ(std::nullopt, p.uuid);
  EXPECT_EQ(1024u, p.memory_mib);
  EXPECT_EQ(1u, p.cpus);
  EXPECT_EQ(Machine::q35, p.machine);
  EXPECT_EQ(Accel::automatic, p.accel);
  EXPECT_EQ("host", p.cpu);
  EXPECT_EQ(Firmware::bios, p.firmware);
  EXPECT_FALSE(p.agent);
  EXPECT_EQ(std::nullopt, p.ready);
  EXPECT_EQ(std::nullopt, p.boot);
  EXPECT_TRUE(p.disks.empty());
  ASSERT_EQ(1u, p.nets.size());
  EXPECT_EQ(Net{}, p.nets[0]);
  EXPECT_EQ(NetMode::user, p.nets[0].mode);
  EXPECT_EQ("virtio", p.nets[0].model);
  EXPECT_TRUE(p.nets[0].forward.empty());
  EXPECT_EQ(std::nullopt, p.cloud_init);
  EXPECT_TRUE(p.shares.empty());
  EXPECT_EQ(seconds(60), p.shutdown.timeout);
  EXPECT_EQ(RestartPolicy::no, p.shutdown.restart);
  EXPECT_EQ("qemu-system-x86_64", p.qemu.binary);
  EXPECT_TRUE(p.qemu.extra_args.empty());
  EXPECT_TRUE(p.qemu.sandbox);
}

TEST(ProfileTest, EmptyCloudInitTableAsksForASeedWithDefaults) {
  const Profile p = parse("[cloud_init]\n");
  ASSERT_TRUE(p.cloud_init);
  EXPECT_EQ(CloudInit{}, *p.cloud_init);
  EXPECT_EQ(std::nullopt, p.cloud_init->hostname);  // the VM's name, when the seed is made
  EXPECT_TRUE(p.cloud_init->ssh_authorized_keys.empty());
}

TEST(ProfileTest, CloudInitUserDataIsAResolvedPath) {
  const Profile p = parse("[cloud_init]\nhostname = \"h-1\"\nuser_data = \"user-data.yaml\"\n");
  ASSERT_TRUE(p.cloud_init);
  EXPECT_EQ(fs::path("/vm/user-data.yaml"), p.cloud_init->user_data);
  EXPECT_EQ("h-1", p.cloud_init->hostname);
  EXPECT_EQ(std::nullopt, p.cloud_init->user);
}

TEST(ProfileTest, CloudInitAcceptsEveryKindOfOpenSshKey) {
  const Profile p = parse(
      "[cloud_init]\nuser = \"_svc-1\"\nssh_authorized_keys = [\n"
      "  \"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== a b c\",\n"
      "  \"ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY=\",\n"
      "  \"sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t\",\n"
      "]\n");
  ASSERT_TRUE(p.cloud_init);
  EXPECT_EQ("_svc-1", p.cloud_init->user);
  EXPECT_EQ(3u, p.cloud_init->ssh_authorized_keys.size());
}

TEST(ProfileTest, ShareTagDefaultsToTheFolderName) {
  const Profile p = parse("[[share]]\npath = \"/home/me/My Project.v2\"\n[[share]]\npath = \"/vm/" +
                          std::string(40, 'x') + "/\"\n[[share]]\npath = \"src\"\n");
  ASSERT_EQ(3u, p.shares.size());
  EXPECT_EQ("My_Project_v2", p.shares[0].tag);
  EXPECT_EQ(std::string(31, 'x'), p.shares[1].tag);  // cut to the 31 characters 9p allows
  EXPECT_EQ(fs::path("/vm/" + std::string(40, 'x')), p.shares[1].path);
  EXPECT_EQ("src", p.shares[2].tag);
  EXPECT_FALSE(p.shares[2].readonly);
}

TEST(ProfileTest, SharesWithTheSameFolderNameNeedTheirOwnTags) {
  const Profile p =
      parse("[[share]]\npath = \"/srv/data\"\n[[share]]\npath = \"/srv/other/data\"\ntag = \"data-2\"\n");
  ASSERT_EQ(2u, p.shares.size());
  EXPECT_EQ("data", p.shares[0].tag);
  EXPECT_EQ("data-2", p.shares[1].tag);
}

TEST(ProfileTest, OverridesAddSharesAndCloudInit) {
  const Profile p = parse("", {"share[0].path=/srv/data", "share.0.readonly=true",
                               "cloud_init.ssh_authorized_keys=[\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA x\"]"});
  ASSERT_EQ(1u, p.shares.size());
  EXPECT_EQ((Share{"/srv/data", "data", true}), p.shares[0]);
  ASSERT_TRUE(p.cloud_init);
  EXPECT_EQ(1u, p.cloud_init->ssh_authorized_keys.size());
}

TEST(ProfileTest, TableDefaultsApplyToEachEntry) {
  const Profile p =
      parse("[ready]\n[[disk]]\npath = \"disk.qcow2\"\n[[net]]\n[shutdown]\n[qemu]\n");
  ASSERT_TRUE(p.ready);
  EXPECT_EQ(Ready{}, *p.ready);
  EXPECT_EQ(seconds(300), p.ready->timeout);
  EXPECT_EQ(std::nullopt, p.ready->serial);
  ASSERT_EQ(1u, p.disks.size());
  EXPECT_EQ(DiskFormat::qcow2, p.disks[0].format);
  EXPECT_EQ(DiskBus::virtio, p.disks[0].bus);
  EXPECT_EQ(CacheMode::writeback, p.disks[0].cache);
  EXPECT_FALSE(p.disks[0].readonly);
  ASSERT_EQ(1u, p.nets.size());
  EXPECT_EQ(Net{}, p.nets[0]);
  EXPECT_EQ(Shutdown{}, p.shutdown);
  EXPECT_EQ(QemuOptions{}, p.qemu);
}

TEST(ProfileTest, NameComesFromTheFileUnlessGiven) {
  EXPECT_EQ("web.prod_2", parse("", {}, "/vm/web.prod_2.toml").name);
  EXPECT_EQ("named", parse("name = \"named\"\n", {}, "/vm/other.toml").name);

  ProfileOptions options;
  options.files = &kFiles;
  options.name = "from-option";
  EXPECT_EQ("from-option", parse_profile("name = \"named\"\n", "/vm/dev.toml", options).name);
  // --name also rescues a file whose stem is not a valid name.
  EXPECT_EQ("from-option", parse_profile("", "/vm/my profile.toml", options).name);
}

TEST(ProfileTest, AcceptsLongestNameAndEveryNameCharacter) {
  const std::string longest(63, 'a');
  EXPECT_EQ(longest, parse("name = \"" + longest + "\"\n").name);
  EXPECT_EQ("0a.b_c-D", parse("name = \"0a.b_c-D\"\n").name);
}

TEST(ProfileTest, RelativePathsResolveAgainstTheProfileFolder) {
  const FakeFiles files{"/vm/sub/vmlinuz", "/base.qcow2", "/vm/a,b.qcow2"};
  ProfileOptions options;
  options.files = &files;
  const Profile p = parse_profile(
      "[boot]\nkernel = \"./sub//vmlinuz\"\n"
      "[[disk]]\npath = \"a,b.qcow2\"\n"
      "[[disk]]\npath = \"../data/x.qcow2\"\nbacking = \"../base.qcow2\"\n"
      "[[disk]]\npath = \"/abs/./y/../z.raw\"\nsize = 1\n",
      "/vm/dev.toml", options);
  EXPECT_EQ(fs::path("/vm/sub/vmlinuz"), p.boot->kernel);
  EXPECT_EQ(fs::path("/vm/a,b.qcow2"), p.disks[0].path);  // commas are fine
  EXPECT_EQ(fs::path("/data/x.qcow2"), p.disks[1].path);
  EXPECT_EQ(fs::path("/base.qcow2"), p.disks[1].backing);
  EXPECT_EQ(fs::path("/abs/z.raw"), p.disks[2].path);
}

TEST(ProfileTest, RelativeOriginIsMadeAbsoluteButShownAsGiven) {
  const fs::path cwd = fs::current_path();
  const FakeFiles files{cwd / "profiles/disk.qcow2"};
  ProfileOptions options;
  options.files = &files;
  const Profile p =
      parse_profile("[[disk]]\npath = \"disk.qcow2\"\n", "profiles/../profiles/dev.toml", options);
  EXPECT_EQ(cwd / "profiles/dev.toml", p.source);
  EXPECT_EQ(cwd / "profiles/disk.qcow2", p.disks[0].path);
  EXPECT_EQ("dev", p.name);

  EXPECT_EQ(
      "profiles/dev.toml:1:8: cpus: expected integer, got string\n"
      "cpus = \"2\"\n"
      "       ^",
      error_of("cpus = \"2\"\n", {}, "profiles/dev.toml"));
}

TEST(ProfileTest, TextWithoutFileResolvesAgainstWorkingDirectory) {
  const fs::path cwd = fs::current_path();
  const FakeFiles files{cwd / "k"};
  ProfileOptions options;
  options.files = &files;
  const Profile p = parse_profile("name = \"x\"\n[boot]\nkernel = \"k\"\n", "", options);
  EXPECT_EQ(fs::path(), p.source);
  EXPECT_EQ(cwd / "k", p.boot->kernel);
}

TEST(ProfileTest, DiskFormatFollowsTheFileNameUnlessGiven) {
  const Profile p = parse(
      "[[disk]]\npath = \"a.img\"\nsize = 1\n"
      "[[disk]]\npath = \"b.RAW\"\nsize = 1\n"
      "[[disk]]\npath = \"c.qcow2\"\nsize = 1\n"
      "[[disk]]\npath = \"d\"\nsize = 1\n"
      "[[disk]]\npath = \"e.img\"\nsize = 1\nformat = \"qcow2\"\n");
  ASSERT_EQ(5u, p.disks.size());
  EXPECT_EQ(DiskFormat::raw, p.disks[0].format);
  EXPECT_EQ(DiskFormat::raw, p.disks[1].format);
  EXPECT_EQ(DiskFormat::qcow2, p.disks[2].format);
  EXPECT_EQ(DiskFormat::qcow2, p.disks[3].format);
  EXPECT_EQ(DiskFormat::qcow2, p.disks[4].format);
}

TEST(ProfileTest, NewDiskNeedsOnlySizeOrBacking) {
  const Profile p = parse(
      "[[disk]]\npath = \"new.qcow2\"\nsize = 20480\n"
      "[[disk]]\npath = \"overlay.qcow2\"\nbacking = \"base.qcow2\"\n"
      "[[disk]]\npath = \"big.raw\"\nsize = \"64TiB\"\n"
      "[[disk]]\npath = \"tiny.raw\"\nsize = \"1K\"\n");
  EXPECT_EQ(20ull << 30, p.disks[0].size_bytes);
  EXPECT_EQ(std::nullopt, p.disks[1].size_bytes);
  EXPECT_EQ(fs::path("/vm/base.qcow2"), p.disks[1].backing);
  EXPECT_EQ(64ull << 40, p.disks[2].size_bytes);
  EXPECT_EQ(1024u, p.disks[3].size_bytes);
}

TEST(ProfileTest, MemoryTakesUnitsOrMiB) {
  EXPECT_EQ(2048u, parse("memory = \"2GiB\"\n").memory_mib);
  EXPECT_EQ(2048u, parse("memory = \"2 g\"\n").memory_mib);
  EXPECT_EQ(1536u, parse("memory = 1536\n").memory_mib);
  EXPECT_EQ(1536u, parse("memory = \"1536\"\n").memory_mib);
  EXPECT_EQ(16u, parse("memory = \"16m\"\n").memory_mib);
  EXPECT_EQ(16u, parse("memory = \"16384KiB\"\n").memory_mib);
  EXPECT_EQ(1048576u, parse("memory = \"1 TiB\"\n").memory_mib);
  EXPECT_EQ(1048576u, parse("memory = 1048576\n").memory_mib);
}

TEST(ProfileTest, ForwardRulesDefaultToTcpOnLoopback) {
  const Profile p = parse(
      "[[net]]\nforward = [\"2222:22\", \"UDP:5353:53\", \"0.0.0.0:80:8080\", "
      "\"udp:192.168.1.10:65535:1\"]\n"
      "[[net]]\nforward = [\"127.0.0.2:2222:22\", \"udp:2222:22\"]\n");
  ASSERT_EQ(2u, p.nets.size());
  const std::vector<PortForward> first{{"tcp", "127.0.0.1", 2222, 22},
                                       {"udp", "127.0.0.1", 5353, 53},
                                       {"tcp", "0.0.0.0", 80, 8080},
                                       {"udp", "192.168.1.10", 65535, 1}};
  const std::vector<PortForward> second{{"tcp", "127.0.0.2", 2222, 22},
                                        {"udp", "127.0.0.1", 2222, 22}};
  EXPECT_EQ(first, p.nets[0].forward);
  EXPECT_EQ(second, p.nets[1].forward);
}

TEST(ProfileTest, ModeNoneKeepsAnEntryWithNoNic) {
  const Profile p = parse("[[net]]\nmode = \"none\"\n");
  ASSERT_EQ(1u, p.nets.size());
  EXPECT_EQ(NetMode::none, p.nets[0].mode);
}

TEST(ProfileTest, TapNeedsNoInterfaceName) {
  const Profile p = parse("[[net]]\nmode = \"tap\"\n");
  EXPECT_EQ(NetMode::tap, p.nets[0].mode);
  EXPECT_EQ("", p.nets[0].ifname);
}

TEST(ProfileTest, QemuBinaryIsANameOrAResolvedPath) {
  EXPECT_EQ("qemu-kvm", parse("[qemu]\nbinary = \"qemu-kvm\"\n").qemu.binary);
  EXPECT_EQ("/vm/bin/qemu", parse("[qemu]\nbinary = \"./bin/qemu\"\n").qemu.binary);
}

TEST(ProfileTest, SerialPatternMayHoldControlCharacters) {
  const Profile p = parse("[ready]\nserial = \"\\r\\nlogin:\\t\"\n");
  EXPECT_EQ("\r\nlogin:\t", p.ready->serial);
}

TEST(ProfileTest, MicrovmWithBootAndVirtioIsValid) {
  const Profile p = parse(
      "machine = \"microvm\"\n[boot]\nkernel = \"vmlinuz\"\n"
      "[[disk]]\npath = \"disk.qcow2\"\nbus = \"virtio\"\n[[net]]\nmodel = \"virtio\"\n");
  EXPECT_EQ(Machine::microvm, p.machine);
}

TEST(ProfileTest, SixIdeDisksFitOnQ35) {
  std::string text;
  for (int i = 0; i < 6; ++i)
    text += "[[disk]]\npath = \"d" + std::to_string(i) + "\"\nsize = 1\nbus = \"ide\"\n";
  EXPECT_EQ(6u, parse(text).disks.size());
  EXPECT_NE("(no error)", error_of("machine = \"pc\"\n" + text));
}

// --- overrides ---

TEST(ProfileTest, OverridesTakeTomlValuesOrPlainStrings) {
  const Profile p = parse(
      "cpus = 2\nmemory = 1024\n",
      {"cpus=4", "agent=true", "memory=2GiB", "name=\"quoted-name\"", "cpu = Skylake-Client,+avx ",
       "qemu.extra_args=[\"-S\", \"-s\"]", "qemu.binary=/usr/bin/qemu-system-x86_64"});
  EXPECT_EQ(4u, p.cpus);
  EXPECT_TRUE(p.agent);
  EXPECT_EQ(2048u, p.memory_mib);
  EXPECT_EQ("quoted-name", p.name);
  EXPECT_EQ("Skylake-Client,+avx", p.cpu);
  EXPECT_EQ((std::vector<std::string>{"-S", "-s"}), p.qemu.extra_args);
  EXPECT_EQ("/usr/bin/qemu-system-x86_64", p.qemu.binary);
}

TEST(ProfileTest, OverridesCreateMissingTables) {
  const Profile p = parse("", {"boot.kernel=/vm/vmlinuz", "boot.cmdline=console=ttyS0 quiet",
                               "shutdown.restart=always"});
  ASSERT_TRUE(p.boot);
  EXPECT_EQ(fs::path("/vm/vmlinuz"), p.boot->kernel);
  EXPECT_EQ("console=ttyS0 quiet", p.boot->cmdline);  // only the first "=" splits
  EXPECT_EQ(RestartPolicy::always, p.shutdown.restart);
}

TEST(ProfileTest, OverridesIndexArraysBothWays) {
  const Profile p =
      parse("[[disk]]\npath = \"disk.qcow2\"\n[[net]]\nforward = [\"2222:22\"]\n",
            {"disk[0].cache=none", "disk.0.bus=scsi", "disk[1].path=/vm/base.qcow2",
             "disk.1.readonly=true", "net[0].forward[1]=8080:80", "net.0.forward.0=udp:53:53"});
  ASSERT_EQ(2u, p.disks.size());
  EXPECT_EQ(CacheMode::none, p.disks[0].cache);
  EXPECT_EQ(DiskBus::scsi, p.disks[0].bus);
  EXPECT_EQ(fs::path("/vm/base.qcow2"), p.disks[1].path);
  EXPECT_TRUE(p.disks[1].readonly);
  const std::vector<PortForward> forwards{{"udp", "127.0.0.1", 53, 53},
                                          {"tcp", "127.0.0.1", 8080, 80}};
  EXPECT_EQ(forwards, p.nets[0].forward);
}

TEST(ProfileTest, OverridesAppendToMissingArrays) {
  const Profile p =
      parse("", {"disk[0].path=/vm/disk.qcow2", "net.0.mode=none", "qemu.extra_args[0]=-S"});
  ASSERT_EQ(1u, p.disks.size());
  EXPECT_EQ(fs::path("/vm/disk.qcow2"), p.disks[0].path);
  ASSERT_EQ(1u, p.nets.size());
  EXPECT_EQ(NetMode::none, p.nets[0].mode);
  EXPECT_EQ(std::vector<std::string>{"-S"}, p.qemu.extra_args);
}

TEST(ProfileTest, OverridesReplaceWholeValuesAndLaterOnesWin) {
  const Profile p =
      parse("[[disk]]\npath = \"disk.qcow2\"\n[qemu]\nextra_args = [\"-a\"]\n",
            {"cpus=2", "cpus=3", "disk=[{path = \"/vm/base.qcow2\"}]", "qemu.extra_args=[]"});
  EXPECT_EQ(3u, p.cpus);
  ASSERT_EQ(1u, p.disks.size());
  EXPECT_EQ(fs::path("/vm/base.qcow2"), p.disks[0].path);
  EXPECT_TRUE(p.qemu.extra_args.empty());
}

TEST(ProfileTest, OverridePathsAreRelativeToTheWorkingDirectory) {
  const fs::path cwd = fs::current_path();
  const FakeFiles files{cwd / "k", "/vm/vmlinuz"};
  ProfileOptions options;
  options.files = &files;
  options.overrides = {"boot.kernel=k"};
  const Profile p = parse_profile("[boot]\nkernel = \"vmlinuz\"\n", "/vm/dev.toml", options);
  EXPECT_EQ(cwd / "k", p.boot->kernel);
}

TEST(ProfileTest, OverrideNameIsValidatedAndOptionNameWins) {
  EXPECT_EQ("set-name", parse("", {"name=set-name"}).name);
  ProfileOptions options;
  options.files = &kFiles;
  options.overrides = {"name=set-name"};
  options.name = "option-name";
  EXPECT_EQ("option-name", parse_profile("", "/vm/dev.toml", options).name);
}

// --- [logs] ---

TEST(ProfileTest, LogsAreCappedAt8MiBUnlessTheProfileSaysOtherwise) {
  EXPECT_EQ(8u << 20, parse("").logs.max_size);
  EXPECT_EQ(8u << 20, parse("[logs]\n").logs.max_size);
  EXPECT_EQ(1u << 20, parse("[logs]\nmax_size = \"1MiB\"\n").logs.max_size);
  EXPECT_EQ(64u << 10, parse("[logs]\nmax_size = \"64K\"\n").logs.max_size);
  EXPECT_EQ(std::uint64_t{2} << 30, parse("[logs]\nmax_size = \"2GiB\"\n").logs.max_size);
  // An integer counts MiB, as for memory and disk sizes.
  EXPECT_EQ(32u << 20, parse("[logs]\nmax_size = 32\n").logs.max_size);
  EXPECT_EQ(3u << 20, parse("", {"logs.max_size=3MiB"}).logs.max_size);
}

TEST(ProfileTest, ToTomlWritesLogsOnlyWhenSet) {
  EXPECT_EQ(std::string::npos, to_toml(parse("")).find("[logs]"));
  EXPECT_NE(std::string::npos,
            to_toml(parse("[logs]\nmax_size = \"1MiB\"\n")).find("\n[logs]\nmax_size = \"1MiB\"\n"));
}

// --- to_toml ---

TEST(ProfileTest, ToTomlSpellsOutEveryDefault) {
  EXPECT_EQ(
      "name = \"dev\"\n"
      "memory = \"1GiB\"\n"
      "cpus = 1\n"
      "machine = \"q35\"\n"
      "accel = \"auto\"\n"
      "cpu = \"host\"\n"
      "firmware = \"bios\"\n"
      "agent = false\n"
      "\n"
      "[[net]]\n"
      "mode = \"user\"\n"
      "model = \"virtio\"\n"
      "forward = []\n"
      "\n"
      "[shutdown]\n"
      "timeout = 60\n"
      "restart = \"no\"\n"
      "\n"
      "[qemu]\n"
      "binary = \"qemu-system-x86_64\"\n"
      "extra_args = []\n"
      "sandbox = true\n",
      to_toml(parse("")));
}

TEST(ProfileTest, ToTomlWritesAbsolutePathsAndExactSizes) {
  const std::string text =
      to_toml(parse("memory = \"1536MiB\"\n[[disk]]\npath = \"new.qcow2\"\nsize = \"1536KiB\"\n"
                    "[[net]]\nforward = [\"2222:22\"]\nmac = \"52:54:00:AA:BB:CC\"\n"));
  EXPECT_NE(std::string::npos, text.find("memory = \"1536MiB\"\n"));
  EXPECT_NE(std::string::npos,
            text.find("[[disk]]\npath = \"/vm/new.qcow2\"\nformat = \"qcow2\"\nbus = \"virtio\"\n"
                      "cache = \"writeback\"\nsize = \"1536KiB\"\nreadonly = false\n"));
  EXPECT_NE(std::string::npos,
            text.find("mac = \"52:54:00:aa:bb:cc\"\nforward = [\"tcp:127.0.0.1:2222:22\"]\n"));
}

TEST(ProfileTest, ToTomlRoundTripsEveryKindOfProfile) {
  const std::vector<std::string> texts{
      std::string(kFullProfile),
      "",
      "name = \"x\"\nmemory = \"1TiB\"\ncpus = 255\n[ready]\n",
      "machine = \"microvm\"\nagent = true\n[boot]\nkernel = \"vmlinuz\"\n"
      "cmdline = \"a \\\"quoted\\\" \\\\ backslash \\u00e9\"\n"
      "[ready]\nserial = \"\\n\\u001b\\\\d+\"\nagent = true\n[[net]]\nmode = \"none\"\n",
      "uuid = \"00000000-0000-0000-0000-000000000000\"\n[[net]]\nmode = \"bridge\"\nbridge = "
      "\"br0\"\n"
      "mac = \"02:00:00:00:00:01\"\n[[net]]\nmode = \"tap\"\n[[net]]\nmode = \"user\"\n"
      "[shutdown]\nrestart = \"on-failure\"\ntimeout = 3600\n",
      "[cloud_init]\nuser_data = \"user-data.yaml\"\n[[share]]\npath = \"/srv/data\"\n",
      "name = \"c\"\n[cloud_init]\n[[share]]\npath = \"/srv/data\"\ntag = \"t_1\"\nreadonly = true\n",
      "[cloud_init]\nuser = \"bob\"\n",
      "[[disk]]\npath = \"a.img\"\nsize = 3\n[[disk]]\npath = \"b\"\nbacking = \"base.qcow2\"\n"
      "size = \"7T\"\nreadonly = true\nbus = \"nvme\"\n[qemu]\nextra_args = [\"-S\", \"\", "
      "\"a,b\"]\n"
      "sandbox = false\n",
      "[logs]\nmax_size = \"1536KiB\"\n",
  };
  for (const std::string& text : texts) {
    SCOPED_TRACE(text);
    const Profile original = parse(text);
    const std::string written = to_toml(original);
    Profile reread;
    ASSERT_NO_THROW(reread = parse(written, {}, original.source)) << written;
    EXPECT_EQ(original, reread) << written;
    EXPECT_EQ(written, to_toml(reread));
  }
}

// --- enums, diagnostics, helpers ---

TEST(ProfileTest, EnumsUseProfileSpellings) {
  EXPECT_EQ("q35", to_string(Machine::q35));
  EXPECT_EQ("pc", to_string(Machine::pc));
  EXPECT_EQ("microvm", to_string(Machine::microvm));
  EXPECT_EQ("auto", to_string(Accel::automatic));
  EXPECT_EQ("kvm", to_string(Accel::kvm));
  EXPECT_EQ("tcg", to_string(Accel::tcg));
  EXPECT_EQ("bios", to_string(Firmware::bios));
  EXPECT_EQ("uefi", to_string(Firmware::uefi));
  EXPECT_EQ("qcow2", to_string(DiskFormat::qcow2));
  EXPECT_EQ("raw", to_string(DiskFormat::raw));
  EXPECT_EQ("virtio", to_string(DiskBus::virtio));
  EXPECT_EQ("scsi", to_string(DiskBus::scsi));
  EXPECT_EQ("nvme", to_string(DiskBus::nvme));
  EXPECT_EQ("ide", to_string(DiskBus::ide));
  EXPECT_EQ("none", to_string(CacheMode::none));
  EXPECT_EQ("writeback", to_string(CacheMode::writeback));
  EXPECT_EQ("writethrough", to_string(CacheMode::writethrough));
  EXPECT_EQ("unsafe", to_string(CacheMode::unsafe));
  EXPECT_EQ("directsync", to_string(CacheMode::directsync));
  EXPECT_EQ("user", to_string(NetMode::user));
  EXPECT_EQ("bridge", to_string(NetMode::bridge));
  EXPECT_EQ("tap", to_string(NetMode::tap));
  EXPECT_EQ("none", to_string(NetMode::none));
  EXPECT_EQ("no", to_string(RestartPolicy::no));
  EXPECT_EQ("on-failure", to_string(RestartPolicy::on_failure));
  EXPECT_EQ("always", to_string(RestartPolicy::always));
}

TEST(ProfileTest, DiagnosticToStringShapes) {
  EXPECT_EQ("dev.toml: name: missing",
            (ProfileDiagnostic{"dev.toml", 0, 0, "name", "missing", ""}.to_string()));
  EXPECT_EQ("dev.toml: cannot read",
            (ProfileDiagnostic{"dev.toml", 0, 0, "", "cannot read", ""}.to_string()));
  EXPECT_EQ("a.toml:2:5: bad\nabcdef\n    ^",
            (ProfileDiagnostic{"a.toml", 2, 5, "", "bad", "abcdef"}.to_string()));
  EXPECT_EQ("a.toml:1:4: k: m\n\t\tx\n\t\t ^",
            (ProfileDiagnostic{"a.toml", 1, 4, "k", "m", "\t\tx"}.to_string()));
  // Past the end of the line (an error at the newline) and on a UTF-8 line.
  EXPECT_EQ("a:1:5: m\nab\n    ^", (ProfileDiagnostic{"a", 1, 5, "", "m", "ab"}.to_string()));
  EXPECT_EQ("a:1:4: m\n\xC3\xA9\xE2\x82\xAC=x\n   ^",
            (ProfileDiagnostic{"a", 1, 4, "", "m", "\xC3\xA9\xE2\x82\xAC=x"}.to_string()));
}

TEST(ProfileTest, ProfileErrorJoinsDiagnostics) {
  const ProfileError error({ProfileDiagnostic{"f", 0, 0, "a", "one", ""},
                            ProfileDiagnostic{"f", 1, 1, "b", "two", "x"}});
  EXPECT_EQ("f: a: one\nf:1:1: b: two\nx\n^", std::string(error.what()));
  EXPECT_EQ(2u, error.diagnostics().size());
}

TEST(ProfileTest, DidYouMeanPrefersCaseThenClosest) {
  const std::vector<std::string_view> keys{"mode", "model", "mac", "bridge"};
  EXPECT_EQ("model", profile::did_you_mean("MODEL", keys));
  EXPECT_EQ("mode", profile::did_you_mean("mdoe", keys));
  EXPECT_EQ("bridge", profile::did_you_mean("brige", keys));
  EXPECT_EQ(std::nullopt, profile::did_you_mean("forward", keys));
  EXPECT_EQ(3u, profile::edit_distance("kitten", "sitting"));
  EXPECT_EQ(0u, profile::edit_distance("", ""));
  EXPECT_EQ(4u, profile::edit_distance("", "abcd"));
}

// --- load_profile and the real filesystem ---

TEST(ProfileTest, LoadProfileReadsAndResolvesAgainstItsFolder) {
  const testing::TempDir dir;
  dir.write("vms/vmlinuz", "kernel");
  const fs::path file =
      dir.write("vms/web.toml", "memory = \"2GiB\"\n[boot]\nkernel = \"vmlinuz\"\n");
  const Profile p = load_profile(file);  // the real file checker
  EXPECT_EQ("web", p.name);
  EXPECT_EQ(file, p.source);
  EXPECT_EQ(2048u, p.memory_mib);
  EXPECT_EQ(dir.path() / "vms/vmlinuz", p.boot->kernel);
}

TEST(ProfileTest, LoadProfilePassesOptionsOn) {
  const testing::TempDir dir;
  const fs::path file = dir.write("a.toml", "cpus = 2\n");
  ProfileOptions options;
  options.overrides = {"cpus=3"};
  options.name = "b";
  const Profile p = load_profile(file, options);
  EXPECT_EQ(3u, p.cpus);
  EXPECT_EQ("b", p.name);
}

TEST(ProfileTest, LoadProfileReportsMissingAndUnreadableFiles) {
  const testing::TempDir dir;
  const fs::path missing = dir / "missing.toml";
  try {
    load_profile(missing);
    FAIL() << "no ProfileError";
  } catch (const ProfileError& error) {
    EXPECT_EQ(missing.string() + ": cannot read the profile: No such file or directory",
              std::string(error.what()));
    ASSERT_EQ(1u, error.diagnostics().size());
    EXPECT_EQ(0, error.diagnostics()[0].line);
  }
  try {
    load_profile(dir.path());
    FAIL() << "no ProfileError";
  } catch (const ProfileError& error) {
    EXPECT_EQ(dir.path().string() + ": cannot read the profile: Is a directory",
              std::string(error.what()));
  }
}

TEST(ProfileTest, LoadProfileRefusesFilesOverOneMiB) {
  const testing::TempDir dir;
  const std::string comment = "#" + std::string(1024 * 1024, 'x') + "\n";
  const fs::path big = dir.write("big.toml", comment);
  try {
    load_profile(big);
    FAIL() << "no ProfileError";
  } catch (const ProfileError& error) {
    EXPECT_EQ(big.string() + ": the profile is larger than 1 MiB; is this the right file?",
              std::string(error.what()));
  }
  // Just under the limit is fine.
  const fs::path fits = dir.write("fits.toml", "#" + std::string(1024 * 1024 - 2, 'x') + "\n");
  EXPECT_EQ("fits", load_profile(fits).name);
}

TEST(ProfileTest, LoadProfileReadsPastNulBytes) {
  const testing::TempDir dir;
  const fs::path file = dir.write("nul.toml", std::string("cpus = 2\n# a\0b\n", 15));
  try {
    load_profile(file);
    FAIL() << "a NUL byte must not end the text silently";
  } catch (const ProfileError& error) {
    ASSERT_EQ(1u, error.diagnostics().size());
    EXPECT_EQ(2, error.diagnostics()[0].line);
  }
}

TEST(ProfileTest, RealFileCheckerSeesFilesAndSymlinksWithoutThrowing) {
  const testing::TempDir dir;
  const fs::path file = dir.write("file", "x");
  fs::create_symlink(file, dir / "link");
  fs::create_symlink(dir / "gone", dir / "dangling");
  const FileChecker& files = real_file_checker();
  EXPECT_TRUE(files.exists(file));
  EXPECT_TRUE(files.exists(dir / "link"));
  EXPECT_FALSE(files.exists(dir / "dangling"));
  EXPECT_FALSE(files.exists(dir / "missing"));
  EXPECT_FALSE(files.exists(file / "child"));  // ENOTDIR, not an exception
  fs::create_directory(dir / "folder");
  fs::create_directory_symlink(dir / "folder", dir / "folder-link");
  EXPECT_TRUE(files.is_directory(dir / "folder"));
  EXPECT_TRUE(files.is_directory(dir / "folder-link"));
  EXPECT_FALSE(files.is_directory(file));
  EXPECT_FALSE(files.is_directory(dir / "missing"));
  EXPECT_FALSE(files.is_directory(file / "child"));
}

}  // namespace
}  // namespace qvm
