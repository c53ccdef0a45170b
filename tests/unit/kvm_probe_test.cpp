#include <gtest/gtest.h>

#include "support/fake_kvm_system.hpp"

namespace qvm::host {
namespace {

using testing::FakeKvmSystem;

TEST(KvmProbeTest, UsableWhenEveryCheckPasses) {
  FakeKvmSystem fake;
  KvmStatus status = probe_kvm(fake);
  EXPECT_TRUE(status.usable);
  EXPECT_EQ(status.api_version, 12);
  EXPECT_EQ(status.problem, "");
  // The probe creates a throwaway VM and closes every descriptor it opened.
  EXPECT_EQ(fake.requests.back(), static_cast<unsigned long>(KVM_CREATE_VM));
  EXPECT_EQ(fake.open_fds, 0);
}

TEST(KvmProbeTest, MissingDeviceSaysToLoadTheModule) {
  FakeKvmSystem fake;
  fake.stat_errno = ENOENT;
  KvmStatus status = probe_kvm(fake);
  EXPECT_FALSE(status.usable);
  EXPECT_EQ(status.problem, "/dev/kvm does not exist");
  EXPECT_NE(status.hint.find("kvm_intel or kvm_amd"), std::string::npos) << status.hint;
}

TEST(KvmProbeTest, NoPermissionNamesTheGroupToJoin) {
  FakeKvmSystem fake;
  fake.open_errno = EACCES;
  KvmStatus status = probe_kvm(fake);
  EXPECT_FALSE(status.usable);
  EXPECT_EQ(status.problem, "no permission to open /dev/kvm (group kvm)");
  EXPECT_EQ(status.hint, "join the kvm group (sudo usermod -aG kvm \"$USER\"), then log in again");
}

TEST(KvmProbeTest, AddedToGroupButSessionIsOlderSaysToLogInAgain) {
  FakeKvmSystem fake;
  fake.open_errno = EACCES;
  fake.listed_groups = {108};
  KvmStatus status = probe_kvm(fake);
  EXPECT_EQ(status.hint,
            "you were added to the kvm group after this session started: log out and in again");
}

TEST(KvmProbeTest, InGroupButDeniedBlamesASecurityModule) {
  FakeKvmSystem fake;
  fake.open_errno = EACCES;
  fake.process_groups = {108};
  KvmStatus status = probe_kvm(fake);
  EXPECT_NE(status.hint.find("security module"), std::string::npos) << status.hint;
}

TEST(KvmProbeTest, DeviceWithoutGroupAccessNeedsAnAdministrator) {
  FakeKvmSystem fake;
  fake.open_errno = EACCES;
  fake.owner.mode = S_IFCHR | 0600;
  fake.owner.gid = 0;
  KvmStatus status = probe_kvm(fake);
  EXPECT_EQ(status.problem, "no permission to open /dev/kvm");
  EXPECT_NE(status.hint.find("administrator"), std::string::npos) << status.hint;
}

TEST(KvmProbeTest, WrongApiVersionIsRefused) {
  FakeKvmSystem fake;
  fake.api_version = 11;
  KvmStatus status = probe_kvm(fake);
  EXPECT_FALSE(status.usable);
  EXPECT_EQ(status.problem, "KVM API version 11, expected 12");
  EXPECT_EQ(fake.open_fds, 0);
}

TEST(KvmProbeTest, MissingCapabilityIsNamed) {
  FakeKvmSystem fake;
  fake.missing_capabilities = {KVM_CAP_IOEVENTFD};
  KvmStatus status = probe_kvm(fake);
  EXPECT_FALSE(status.usable);
  EXPECT_EQ(status.problem, "the kernel's KVM lacks KVM_CAP_IOEVENTFD");
  EXPECT_EQ(fake.open_fds, 0);
}

TEST(KvmProbeTest, VmCreationFailureMeansUnusable) {
  FakeKvmSystem fake;
  fake.create_vm_errno = EBUSY;
  KvmStatus status = probe_kvm(fake);
  EXPECT_FALSE(status.usable);
  EXPECT_EQ(status.problem, "KVM_CREATE_VM failed: Device or resource busy");
  EXPECT_EQ(fake.open_fds, 0);
}

}  // namespace
}  // namespace qvm::host
