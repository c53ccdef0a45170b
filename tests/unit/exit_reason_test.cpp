#include <gtest/gtest.h>

#include "supervisor/exit_reason.hpp"

namespace qvm::supervisor {
namespace {

using process::ExitStatus;
const ExitStatus kClean{false, 0, true};
const ExitStatus kKilled{true, 9, true};

nlohmann::json shutdown(bool guest, const std::string& reason) {
  return {{"guest", guest}, {"reason", reason}};
}

TEST(ExitReasonTest, HostIntentWinsOverWhatQemuSaid) {
  auto down = classify_exit(StopIntent::down, shutdown(true, "guest-shutdown"), false, kClean);
  EXPECT_EQ(down.state, VmState::stopped);
  EXPECT_EQ(down.reason, "host request");
  auto kill = classify_exit(StopIntent::kill, std::nullopt, false, kKilled);
  EXPECT_EQ(kill.state, VmState::stopped);
  EXPECT_EQ(kill.reason, "host request (forced)");
  EXPECT_EQ(kill.reason_code, "host-kill");
}

TEST(ExitReasonTest, TheGuestsOwnShutdown) {
  auto r = classify_exit(StopIntent::none, shutdown(true, "guest-shutdown"), false, kClean);
  EXPECT_EQ(r.state, VmState::stopped);
  EXPECT_EQ(r.reason, "guest shutdown");
  EXPECT_EQ(r.reason_code, "guest-shutdown");
}

TEST(ExitReasonTest, PanicIsACrash) {
  EXPECT_EQ(classify_exit(StopIntent::none, shutdown(true, "guest-panic"), true, kClean).reason, "guest panic");
  EXPECT_EQ(classify_exit(StopIntent::none, std::nullopt, true, kKilled).state, VmState::crashed);
}

TEST(ExitReasonTest, SomeoneElsesQuitOrSignalIsAHostRequest) {
  auto quit = classify_exit(StopIntent::none, shutdown(false, "host-qmp-quit"), false, kClean);
  EXPECT_EQ(quit.state, VmState::stopped);
  EXPECT_EQ(quit.reason, "host request (host-qmp-quit)");
  auto term = classify_exit(StopIntent::none, shutdown(false, "host-signal"), false, kClean);
  EXPECT_EQ(term.reason, "host request (QEMU received a termination signal)");
}

TEST(ExitReasonTest, NoShutdownEventIsACrash) {
  auto signal = classify_exit(StopIntent::none, std::nullopt, false, kKilled);
  EXPECT_EQ(signal.state, VmState::crashed);
  EXPECT_EQ(signal.reason, "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(signal.reason_code, "crash-signal");
  auto code = classify_exit(StopIntent::none, std::nullopt, false, ExitStatus{false, 1, true});
  EXPECT_EQ(code.reason, "QEMU exited with code 1");
  EXPECT_EQ(code.reason_code, "crash-exit");
  auto eof = classify_exit(StopIntent::none, std::nullopt, false, kClean);
  EXPECT_EQ(eof.reason, "QEMU exited without a shutdown event");
  auto unknown = classify_exit(StopIntent::none, std::nullopt, false, ExitStatus{false, 0, false});
  EXPECT_EQ(unknown.reason_code, "crash-eof");
}

}  // namespace
}  // namespace qvm::supervisor
