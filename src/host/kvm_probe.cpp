#include <fcntl.h>
#include <grp.h>
#include <linux/kvm.h>
#include <pwd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "host/host_info.hpp"

namespace qvm::host {
namespace {

class RealKvmSystem final : public KvmSystem {
 public:
  int stat_device(const std::string& path, DeviceOwner& out) override {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return errno;
    out = {st.st_uid, st.st_gid, st.st_mode};
    return 0;
  }
  int open_device(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    return fd >= 0 ? fd : -errno;
  }
  int ioctl(int fd, unsigned long request, unsigned long arg) override {
    int r = ::ioctl(fd, request, arg);
    return r >= 0 ? r : -errno;
  }
  void close(int fd) override { ::close(fd); }
  std::optional<std::string> group_name(unsigned gid) override {
    std::vector<char> buf(16384);
    struct group gr {};
    struct group* found = nullptr;
    if (getgrgid_r(gid, &gr, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
      return std::nullopt;
    }
    return std::string(found->gr_name);
  }
  bool process_in_group(unsigned gid) override {
    if (getegid() == gid) return true;
    int n = getgroups(0, nullptr);
    if (n <= 0) return false;
    std::vector<gid_t> groups(static_cast<size_t>(n));
    n = getgroups(n, groups.data());
    for (int i = 0; i < n; ++i) {
      if (groups[static_cast<size_t>(i)] == gid) return true;
    }
    return false;
  }
  bool user_listed_in_group(unsigned gid) override {
    std::vector<char> pwbuf(16384);
    struct passwd pw {};
    struct passwd* me = nullptr;
    if (getpwuid_r(geteuid(), &pw, pwbuf.data(), pwbuf.size(), &me) != 0 || me == nullptr) {
      return false;
    }
    if (me->pw_gid == gid) return true;
    std::vector<char> grbuf(65536);
    struct group gr {};
    struct group* found = nullptr;
    if (getgrgid_r(gid, &gr, grbuf.data(), grbuf.size(), &found) != 0 || found == nullptr) {
      return false;
    }
    for (char** member = found->gr_mem; member != nullptr && *member != nullptr; ++member) {
      if (std::strcmp(*member, me->pw_name) == 0) return true;
    }
    return false;
  }
  unsigned effective_uid() override { return geteuid(); }
};

// Capabilities QEMU 7.2 refuses to start without (kvm_required_capabilites in kvm-all.c).
constexpr std::pair<int, const char*> kRequiredCapabilities[] = {
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_DESTROY_MEMORY_REGION_WORKS, "KVM_CAP_DESTROY_MEMORY_REGION_WORKS"},
    {KVM_CAP_JOIN_MEMORY_REGIONS_WORKS, "KVM_CAP_JOIN_MEMORY_REGIONS_WORKS"},
    {KVM_CAP_INTERNAL_ERROR_DATA, "KVM_CAP_INTERNAL_ERROR_DATA"},
    {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
};

KvmStatus unusable(std::string problem, std::string hint) {
  KvmStatus status;
  status.problem = std::move(problem);
  status.hint = std::move(hint);
  return status;
}

KvmStatus permission_problem(KvmSystem& system, const std::string& device,
                             const KvmSystem::DeviceOwner& owner) {
  std::optional<std::string> group = system.group_name(owner.gid);
  std::string problem = "no permission to open " + device;
  const bool group_rw = (owner.mode & (S_IRGRP | S_IWGRP)) == (S_IRGRP | S_IWGRP);
  if (!group || owner.gid == 0 || !group_rw) {
    return unusable(problem, "ask an administrator to make " + device +
                                 " group-accessible to a kvm group (udev rule) and join it");
  }
  problem += " (group " + *group + ")";
  if (system.process_in_group(owner.gid)) {
    return unusable(problem, "a security module (SELinux, AppArmor, a container) denies access");
  }
  if (system.user_listed_in_group(owner.gid)) {
    return unusable(problem, "you were added to the " + *group +
                                 " group after this session started: log out and in again");
  }
  return unusable(problem, "join the " + *group + " group (sudo usermod -aG " + *group +
                               " \"$USER\"), then log in again");
}

}  // namespace

KvmSystem& real_kvm_system() {
  static RealKvmSystem system;
  return system;
}

KvmStatus probe_kvm(KvmSystem& system, const std::string& device) {
  KvmSystem::DeviceOwner owner;
  if (int err = system.stat_device(device, owner); err != 0) {
    if (err == ENOENT) {
      return unusable(device + " does not exist",
                      "load the kvm_intel or kvm_amd module and enable virtualization "
                      "(VT-x/AMD-V) in the firmware; nested guests need it enabled on the host");
    }
    return unusable("cannot stat " + device + ": " + std::strerror(err), "check " + device);
  }
  int fd = system.open_device(device);
  if (fd < 0) {
    if (fd == -EACCES || fd == -EPERM) return permission_problem(system, device, owner);
    return unusable("cannot open " + device + ": " + std::strerror(-fd),
                    "check that the kvm module is loaded");
  }
  KvmStatus status;
  int version = system.ioctl(fd, KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION) {
    system.close(fd);
    return unusable(version < 0 ? "KVM_GET_API_VERSION failed: " + std::string(std::strerror(-version))
                                : "KVM API version " + std::to_string(version) + ", expected " +
                                      std::to_string(KVM_API_VERSION),
                    "update the host kernel");
  }
  status.api_version = version;
  for (const auto& [capability, name] : kRequiredCapabilities) {
    if (system.ioctl(fd, KVM_CHECK_EXTENSION, static_cast<unsigned long>(capability)) <= 0) {
      system.close(fd);
      return unusable(std::string("the kernel's KVM lacks ") + name, "update the host kernel");
    }
  }
  // A module can load yet refuse VMs (another hypervisor owns VT-x, or the nested
  // hypervisor hides it); only creating one tells.
  int vm = system.ioctl(fd, KVM_CREATE_VM, 0);
  system.close(fd);
  if (vm < 0) {
    return unusable("KVM_CREATE_VM failed: " + std::string(std::strerror(-vm)),
                    "another hypervisor may be holding the CPU's virtualization extensions");
  }
  system.close(vm);
  status.usable = true;
  return status;
}

}  // namespace qvm::host
