// The shutdown ladder alone, on a fake clock: every step, wait and re-press is exact.
#include "supervisor/shutdown_ladder.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace qvm::supervisor {
namespace {

using namespace std::chrono_literals;
using Clock = LadderTimer::Clock;

// A timer whose clock moves only when the test says so.
class FakeLadderTimer : public LadderTimer {
 public:
  Clock::time_point now() const override { return now_; }
  void arm(Clock::time_point at, std::function<void()> fire) override {
    at_ = at;
    fire_ = std::move(fire);
  }
  void cancel() override { fire_ = nullptr; }

  // Moves the clock by `delta`, firing every wait that falls due on the way, in order.
  void advance(std::chrono::milliseconds delta) {
    const Clock::time_point end = now_ + delta;
    while (fire_ && at_ <= end) {
      now_ = std::max(now_, at_);
      auto fire = std::move(fire_);
      fire_ = nullptr;
      fire();
    }
    now_ = end;
  }
  bool armed() const { return static_cast<bool>(fire_); }

 private:
  Clock::time_point now_{std::chrono::hours(1)};
  Clock::time_point at_{};
  std::function<void()> fire_;
};

class ShutdownLadderTest : public ::testing::Test {
 protected:
  ShutdownLadderTest() : ladder_(timer_, actions(), {200ms, 300ms, 400ms}) {}

  LadderActions actions() {
    LadderActions a;
    a.resume = [this] { did("cont"); };
    a.press_button = [this] { did("system_powerdown"); };
    a.ask_agent = [this](std::function<void(bool)> accepted) {
      did("guest-shutdown");
      agent_answer_ = std::move(accepted);
    };
    a.quit = [this] { did("quit"); };
    a.signal = [this](int signal) {
      did(signal == SIGTERM ? "SIGTERM" : signal == SIGKILL ? "SIGKILL" : "signal");
    };
    a.progress = [this](const std::string& line) { progress_.push_back(line); };
    a.entered = [this](LadderStep step) { entered_.push_back(std::string(to_string(step))); };
    return a;
  }

  void did(const std::string& what) { actions_.push_back(what + "@" + std::to_string(elapsed())); }
  long elapsed() const {
    return ladder_.begun() ? static_cast<long>(ladder_.elapsed().count()) : -1;
  }

  FakeLadderTimer timer_;
  std::vector<std::string> actions_;  // "what@ms since begin"
  std::vector<std::string> progress_;
  std::vector<std::string> entered_;
  std::function<void(bool)> agent_answer_;
  ShutdownLadder ladder_;
};

TEST_F(ShutdownLadderTest, NothingHappensBeforeBegin) {
  timer_.advance(10s);
  EXPECT_TRUE(actions_.empty());
  EXPECT_EQ(ladder_.step(), LadderStep::none);
  EXPECT_EQ(to_string(ladder_.step()), "");
}

TEST_F(ShutdownLadderTest, TheButtonIsPressedAtOnceAndEveryRepeatUntilTheTimeout) {
  ladder_.begin(true, false, 1000ms);
  EXPECT_EQ(actions_, (std::vector<std::string>{"cont@0", "system_powerdown@0"}));
  timer_.advance(199ms);
  EXPECT_EQ(ladder_.presses(), 1);
  timer_.advance(1ms);
  EXPECT_EQ(ladder_.presses(), 2);
  timer_.advance(800ms);  // 400, 600, 800 ms; at 1000 ms the timeout, not a press
  EXPECT_EQ(ladder_.presses(), 5);
  EXPECT_EQ(ladder_.step(), LadderStep::quit);
  EXPECT_EQ(actions_.back(), "quit@1000");
  EXPECT_EQ(progress_[0], "pressed the ACPI power button");
  EXPECT_EQ(progress_[1], "pressed the ACPI power button (2)");
  EXPECT_EQ(progress_[4], "pressed the ACPI power button (5)");
}

TEST_F(ShutdownLadderTest, AGuestThatObeysStopsTheLadderAtTheAcpiStep) {
  ladder_.begin(true, false, 30s);
  timer_.advance(100ms);
  ladder_.stop();  // QEMU exited
  timer_.advance(60s);
  EXPECT_EQ(ladder_.step(), LadderStep::acpi);
  EXPECT_EQ(ladder_.presses(), 1);
  EXPECT_EQ(actions_, (std::vector<std::string>{"cont@0", "system_powerdown@0"}));
  EXPECT_EQ(entered_, std::vector<std::string>{"acpi"});
  EXPECT_EQ(ladder_.elapsed(), 60100ms);
}

TEST_F(ShutdownLadderTest, AQemuThatIgnoresEverythingGetsEveryStepAfterItsWait) {
  ladder_.begin(true, false, 500ms);
  timer_.advance(10s);
  EXPECT_EQ(actions_, (std::vector<std::string>{"cont@0", "system_powerdown@0",
                                                "system_powerdown@200", "system_powerdown@400",
                                                "quit@500", "SIGTERM@800", "SIGKILL@1200"}));
  EXPECT_EQ(entered_, (std::vector<std::string>{"acpi", "quit", "sigterm", "sigkill"}));
  ASSERT_GE(progress_.size(), 3u);
  EXPECT_EQ(progress_[progress_.size() - 3], "asking QEMU to quit");
  EXPECT_EQ(progress_[progress_.size() - 2], "sending SIGTERM to QEMU");
  EXPECT_EQ(progress_[progress_.size() - 1], "sending SIGKILL to QEMU");
  EXPECT_EQ(ladder_.step(), LadderStep::sigkill);
  EXPECT_FALSE(timer_.armed());
}

TEST_F(ShutdownLadderTest, SigtermThatWorksIsTheStepReported) {
  ladder_.begin(true, false, 500ms);
  timer_.advance(800ms);
  ASSERT_EQ(ladder_.step(), LadderStep::sigterm);
  ladder_.stop();
  timer_.advance(10s);
  EXPECT_EQ(ladder_.step(), LadderStep::sigterm);
  EXPECT_EQ(actions_.back(), "SIGTERM@800");
}

TEST_F(ShutdownLadderTest, ForceOrNoMonitorStartsAtQuit) {
  ladder_.begin(false, true, 30s);
  EXPECT_EQ(actions_, std::vector<std::string>{"quit@0"});
  EXPECT_EQ(entered_, std::vector<std::string>{"quit"});
}

TEST_F(ShutdownLadderTest, SkipGracefulLeavesTheAcpiStepAtOnce) {
  ladder_.begin(true, false, 30s);
  timer_.advance(250ms);
  ladder_.skip_graceful();
  EXPECT_EQ(ladder_.step(), LadderStep::quit);
  EXPECT_EQ(actions_.back(), "quit@250");
  ladder_.skip_graceful();  // past the graceful steps: nothing more
  EXPECT_EQ(std::count(actions_.begin(), actions_.end(), "quit@250"), 1);
  timer_.advance(300ms);
  EXPECT_EQ(actions_.back(), "SIGTERM@550");
}

TEST_F(ShutdownLadderTest, AnAgentThatAcceptsGetsTheGracefulTimeoutThenQuit) {
  ladder_.begin(true, true, 1000ms);
  EXPECT_EQ(actions_, std::vector<std::string>{"guest-shutdown@0"});
  EXPECT_EQ(progress_, std::vector<std::string>{"asking the guest agent to shut the guest down"});
  timer_.advance(100ms);
  agent_answer_(true);
  timer_.advance(899ms);
  EXPECT_EQ(ladder_.step(), LadderStep::agent);
  timer_.advance(1ms);
  EXPECT_EQ(ladder_.step(), LadderStep::quit);
  EXPECT_EQ(actions_.back(), "quit@1000");
}

TEST_F(ShutdownLadderTest, AnAgentThatCannotBeAskedHandsOverToTheButton) {
  ladder_.begin(true, true, 1000ms);
  timer_.advance(300ms);
  agent_answer_(false);
  EXPECT_EQ(ladder_.step(), LadderStep::acpi);
  EXPECT_EQ(actions_,
            (std::vector<std::string>{"guest-shutdown@0", "cont@300", "system_powerdown@300"}));
  timer_.advance(700ms);  // the timeout counts from begin, not from the first press
  EXPECT_EQ(ladder_.step(), LadderStep::quit);
}

TEST_F(ShutdownLadderTest, ALateAgentAnswerIsIgnored) {
  ladder_.begin(true, true, 1000ms);
  ladder_.skip_graceful();
  agent_answer_(false);
  EXPECT_EQ(ladder_.step(), LadderStep::quit);
  ladder_.stop();
  agent_answer_(true);
  EXPECT_FALSE(timer_.armed());
}

TEST_F(ShutdownLadderTest, BeginTwiceIsOneLadder) {
  ladder_.begin(true, false, 1000ms);
  ladder_.begin(false, false, 1000ms);
  EXPECT_EQ(ladder_.step(), LadderStep::acpi);
  EXPECT_EQ(ladder_.presses(), 1);
}

TEST_F(ShutdownLadderTest, AHugeTimeoutDoesNotOverflowTheClock) {
  ladder_.begin(true, false, std::chrono::milliseconds::max());
  timer_.advance(1000ms);
  EXPECT_EQ(ladder_.step(), LadderStep::acpi);
  EXPECT_EQ(ladder_.presses(), 6);
}

}  // namespace
}  // namespace qvm::supervisor
