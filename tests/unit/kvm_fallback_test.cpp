#include <gtest/gtest.h>

#include "supervisor/exit_reason.hpp"

namespace qvm::supervisor {
namespace {

using process::ExitStatus;
const ExitStatus kAborted{true, 6, true};

// What QEMU writes on a nested KVM that refuses the host CPU's MSRs.
const std::string kMsrLog =
    "2026-11-29T23:06:58.079140Z qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n"
    "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion failed.";

KvmRun died_on_kvm() {
  return {Accel::automatic, true, false, true, kMsrLog};
}

TEST(KvmFallbackTest, AutoRetriesUnderTcgWhenQemuDiesOnKvmDuringTheStart) {
  EXPECT_EQ(kvm_fallback(died_on_kvm(), kAborted),
            "QEMU killed by signal 6 (SIGABRT) on it: failed to set MSR 0x10a to 0x69");
}

TEST(KvmFallbackTest, TheReasonIsTheLogsFirstLineWhenItHasNoErrorPrefix) {
  KvmRun run = died_on_kvm();
  run.log_tail = "KVM: entry failed, hardware error 0x0\nEAX=00000000";
  EXPECT_EQ(kvm_fallback(run, ExitStatus{false, 1, true}),
            "QEMU exited with code 1 on it: KVM: entry failed, hardware error 0x0");
}

TEST(KvmFallbackTest, AnAccelAskedForByNameIsNeverChanged) {
  KvmRun run = died_on_kvm();
  run.profile_accel = Accel::kvm;
  EXPECT_EQ(kvm_fallback(run, kAborted), std::nullopt);
}

TEST(KvmFallbackTest, OnlyARunOnKvmFallsBackAndOnlyOnce) {
  KvmRun tcg = died_on_kvm();
  tcg.used_kvm = false;
  EXPECT_EQ(kvm_fallback(tcg, kAborted), std::nullopt);
  KvmRun again = died_on_kvm();
  again.fell_back_before = true;
  EXPECT_EQ(kvm_fallback(again, kAborted), std::nullopt);
}

TEST(KvmFallbackTest, AGuestThatGotPastItsStartIsNotRetried) {
  KvmRun run = died_on_kvm();
  run.start_over = false;  // ready, reported to `up`, failed on its own, or asked to stop
  EXPECT_EQ(kvm_fallback(run, kAborted), std::nullopt);
}

TEST(KvmFallbackTest, AQemuThatDiedForAnotherReasonSaysSo) {
  KvmRun run = died_on_kvm();
  run.log_tail = "qemu-system-x86_64: -device nope: no such device";
  EXPECT_EQ(kvm_fallback(run, ExitStatus{false, 1, true}), std::nullopt);
  run.log_tail = "";
  EXPECT_EQ(kvm_fallback(run, ExitStatus{false, 1, true}), std::nullopt);
}

TEST(KvmFallbackTest, KvmIsFoundInTheLogWhateverItsCase) {
  KvmRun run = died_on_kvm();
  run.log_tail = "qemu: error: Kvm said no";
  EXPECT_EQ(kvm_fallback(run, kAborted), "QEMU killed by signal 6 (SIGABRT) on it: Kvm said no");
}

}  // namespace
}  // namespace qvm::supervisor
