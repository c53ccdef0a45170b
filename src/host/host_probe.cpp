#include "host/host_info.hpp"

#include <pwd.h>

#include <vector>

#include "qvm/error.hpp"

namespace qvm::host {

HostInfo probe_host(std::string_view qemu_binary, HostNeeds needs, const ProgramRunner& run,
                    KvmSystem& kvm, const std::filesystem::path& qemu_cache) {
  HostInfo info;
  if (needs.kvm) {
    info.kvm = probe_kvm(kvm);
  } else {
    info.kvm.problem = "not probed (accel = \"tcg\")";
    info.kvm.hint = "set accel = \"auto\" or \"kvm\"";
  }
  info.qemu = qemu_cache.empty() ? probe_qemu(qemu_binary, run) : probe_qemu(qemu_binary, run, qemu_cache);
  if (needs.uefi) info.uefi = find_uefi_firmware(default_firmware_descriptor_dirs());
  return info;
}

void check_qemu_user(const std::string& user, unsigned euid,
                     const std::function<bool(const std::string&)>& user_exists) {
  if (euid != 0) {
    throw HostError("qemu.user = \"" + user +
                    "\" needs qvm to run as root (QEMU starts as root and then drops to that "
                    "user); remove qemu.user to run QEMU as yourself");
  }
  const bool exists = user_exists ? user_exists(user) : [&] {
    struct passwd entry {};
    struct passwd* found = nullptr;
    std::vector<char> buffer(16384);
    return ::getpwnam_r(user.c_str(), &entry, buffer.data(), buffer.size(), &found) == 0 &&
           found != nullptr;
  }();
  if (!exists) {
    throw HostError("qemu.user = \"" + user + "\": no such user on this host; create it (adduser --system " +
                    user + ") or name an existing one");
  }
}

}  // namespace qvm::host
