// Profile -> QEMU argv: the pure core of `qvm up`, timed with Google Benchmark on a profile
// with 8 disks and 4 NICs (scripts/bench.sh: target < 50 us for build_command_line).
#include <benchmark/benchmark.h>

#include <string>

#include "command_line/command_line.hpp"
#include "qvm/profile.hpp"

namespace qvm::bench {
namespace {

namespace fs = std::filesystem;
constexpr const char* kUuid = "6f1c2a3b-4d5e-8f60-9a1b-2c3d4e5f6071";

// The validator asks whether kernels and images exist; here everything does.
class EverythingExists : public FileChecker {
 public:
  bool exists(const fs::path&) const override { return true; }
};

// A workstation VM: direct kernel boot, 8 disks over every bus and cache mode, 4 NICs.
std::string large_profile_text() {
  std::string text = R"(name = "bench"
memory = "4GiB"
cpus = 4
machine = "q35"
accel = "kvm"
agent = true

[boot]
kernel = "/images/vmlinuz"
initrd = "/images/initrd.img"
cmdline = "console=ttyS0 root=/dev/vda1 quiet"

[ready]
serial = "login:"
)";
  const char* buses[] = {"virtio", "virtio", "virtio", "scsi", "scsi", "nvme", "nvme", "virtio"};
  const char* caches[] = {"none", "writeback", "writethrough", "unsafe", "directsync", "none", "writeback", "none"};
  for (int i = 0; i < 8; ++i) {
    text += "\n[[disk]]\npath = \"/images/disk" + std::to_string(i) + ".qcow2\"\nbus = \"" + buses[i] +
            "\"\ncache = \"" + caches[i] + "\"\nsize = \"" + std::to_string(8 * (i + 1)) + "GiB\"\n";
  }
  text += R"(
[[net]]
forward = ["tcp:2222:22", "tcp:8080:80", "udp:5353:53"]

[[net]]
mode = "user"
model = "e1000e"

[[net]]
mode = "bridge"
bridge = "br0"
mac = "52:54:00:12:34:56"

[[net]]
mode = "tap"
ifname = "tap3"
model = "vmxnet3"
)";
  return text;
}

host::HostInfo fake_host() {
  host::HostInfo host;
  host.kvm.usable = true;
  host.kvm.api_version = 12;
  host.qemu.binary = "/usr/bin/qemu-system-x86_64";
  host.qemu.major = 7;
  host.qemu.minor = 2;
  host.qemu.has_sandbox = true;
  return host;
}

RunPaths fake_paths() { return {"/var/lib/qvm/vms/bench", "/run/user/1000/qvm/0123456789abcdef"}; }

Profile parse(const std::string& text) {
  static const EverythingExists files;
  return parse_profile(text, "/profiles/bench.toml", {{}, std::nullopt, &files});
}

void BM_BuildCommandLine_8Disks4Nics(benchmark::State& state) {
  const Profile profile = parse(large_profile_text());
  const host::HostInfo host = fake_host();
  const RunPaths paths = fake_paths();
  std::size_t words = 0;
  for (auto _ : state) {
    CommandLine command = build_command_line(profile, host, paths, kUuid);
    words = command.argv.size();
    benchmark::DoNotOptimize(command);
  }
  state.counters["argv_words"] = static_cast<double>(words);
}
BENCHMARK(BM_BuildCommandLine_8Disks4Nics);

void BM_ParseProfile_8Disks4Nics(benchmark::State& state) {
  const std::string text = large_profile_text();
  for (auto _ : state) benchmark::DoNotOptimize(parse(text));
}
BENCHMARK(BM_ParseProfile_8Disks4Nics);

// What `qvm up --dry-run` does between reading the file and printing: parse, then build.
void BM_ParseAndBuild_8Disks4Nics(benchmark::State& state) {
  const std::string text = large_profile_text();
  const host::HostInfo host = fake_host();
  const RunPaths paths = fake_paths();
  for (auto _ : state) {
    CommandLine command = build_command_line(parse(text), host, paths, kUuid);
    benchmark::DoNotOptimize(command);
  }
}
BENCHMARK(BM_ParseAndBuild_8Disks4Nics);

}  // namespace
}  // namespace qvm::bench

BENCHMARK_MAIN();
