#include "host/host_info.hpp"

namespace qvm::host {

HostInfo probe_host(std::string_view qemu_binary, bool want_uefi, const ProgramRunner& run,
                    KvmSystem& kvm) {
  HostInfo info;
  info.kvm = probe_kvm(kvm);
  info.qemu = probe_qemu(qemu_binary, run);
  if (want_uefi) info.uefi = find_uefi_firmware(default_firmware_descriptor_dirs());
  return info;
}

}  // namespace qvm::host
