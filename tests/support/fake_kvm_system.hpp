#pragma once

#include <linux/kvm.h>
#include <sys/stat.h>

#include <cerrno>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "host/host_info.hpp"

namespace qvm::testing {

/// A host as the KVM probe sees it, configured per test; records the ioctls it was asked.
class FakeKvmSystem : public host::KvmSystem {
 public:
  // The device: exists (stat_errno 0) with this owner; open() fails with open_errno if set.
  int stat_errno = 0;
  DeviceOwner owner{0, 108, S_IFCHR | 0660};
  int open_errno = 0;
  int api_version = KVM_API_VERSION;
  std::set<int> missing_capabilities;
  int create_vm_errno = 0;
  std::map<unsigned, std::string> groups{{108, "kvm"}};
  std::set<unsigned> process_groups;
  std::set<unsigned> listed_groups;

  std::vector<unsigned long> requests;
  int open_fds = 0;

  int stat_device(const std::string&, DeviceOwner& out) override {
    if (stat_errno != 0) return stat_errno;
    out = owner;
    return 0;
  }
  int open_device(const std::string&) override {
    if (open_errno != 0) return -open_errno;
    ++open_fds;
    return 10;
  }
  int ioctl(int, unsigned long request, unsigned long arg) override {
    requests.push_back(request);
    if (request == KVM_GET_API_VERSION) return api_version;
    if (request == KVM_CHECK_EXTENSION) return missing_capabilities.count(static_cast<int>(arg)) ? 0 : 1;
    if (request == KVM_CREATE_VM) {
      if (create_vm_errno != 0) return -create_vm_errno;
      ++open_fds;
      return 11;
    }
    return -ENOTTY;
  }
  void close(int) override { --open_fds; }
  std::optional<std::string> group_name(unsigned gid) override {
    auto it = groups.find(gid);
    if (it == groups.end()) return std::nullopt;
    return it->second;
  }
  bool process_in_group(unsigned gid) override { return process_groups.count(gid) != 0; }
  bool user_listed_in_group(unsigned gid) override { return listed_groups.count(gid) != 0; }
  unsigned effective_uid() override { return 1000; }
};

}  // namespace qvm::testing
