#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>

namespace qvm::supervisor {

/// The steps of `qvm down`, gentlest first.
enum class LadderStep { none, agent, acpi, quit, sigterm, sigkill };

/// The step's name in reports and the journal ("acpi"; "" for none).
std::string_view to_string(LadderStep step);

/// One timer and the clock it runs on; the ladder's only source of time, so that a test can
/// drive it with a fake. At most one wait is armed at a time.
class LadderTimer {
 public:
  using Clock = std::chrono::steady_clock;
  virtual ~LadderTimer() = default;
  virtual Clock::time_point now() const = 0;
  /// Calls `fire` once at `at` (at once if it has passed), replacing any armed wait.
  virtual void arm(Clock::time_point at, std::function<void()> fire) = 0;
  /// Disarms the wait; its `fire` is not called.
  virtual void cancel() = 0;
};

/// LadderTimer on an io_context's steady_timer: `fire` runs on the io_context's thread.
class AsioLadderTimer : public LadderTimer {
 public:
  explicit AsioLadderTimer(boost::asio::io_context& io) : timer_(io) {}
  Clock::time_point now() const override { return Clock::now(); }
  void arm(Clock::time_point at, std::function<void()> fire) override;
  void cancel() override { timer_.cancel(); }

 private:
  boost::asio::steady_timer timer_;
};

/// What the ladder does to QEMU and tells the world; each is called on the ladder's thread.
struct LadderActions {
  /// Lets a paused guest run (QMP cont), so that it can see the power button.
  std::function<void()> resume;
  /// Presses the ACPI power button (QMP system_powerdown).
  std::function<void()> press_button;
  /// Asks the guest agent to power the guest down; calls `accepted(true|false)` later on the
  /// ladder's thread (or never, if the ladder was stopped meanwhile: it ignores late answers).
  std::function<void(std::function<void(bool accepted)>)> ask_agent;
  /// Asks QEMU to quit (QMP quit).
  std::function<void()> quit;
  /// Sends `signal` to QEMU.
  std::function<void(int signal)> signal;
  /// A line for whoever waits for the down ("sending SIGTERM to QEMU").
  std::function<void(const std::string&)> progress;
  /// The ladder has moved to `step` (journalled as QVM_DOWN_STEP).
  std::function<void(LadderStep)> entered;
};

/// How long each step lasts.
struct LadderTimings {
  std::chrono::milliseconds acpi_repeat{5000};  // re-press the power button this often
  std::chrono::milliseconds quit_wait{5000};    // after QMP quit, before SIGTERM
  std::chrono::milliseconds term_wait{5000};    // after SIGTERM, before SIGKILL
};

/// The shutdown ladder of `qvm down`: the guest agent (when the VM has one), the ACPI power
/// button pressed again every acpi_repeat until the graceful timeout, then QMP quit, SIGTERM
/// and SIGKILL, each after its wait. It only acts; the caller learns that QEMU is gone from
/// its exit and calls stop(), and step() then says which step worked. Single-threaded (the
/// timer's thread); the timer and actions must outlive it.
class ShutdownLadder {
 public:
  using Clock = LadderTimer::Clock;

  ShutdownLadder(LadderTimer& timer, LadderActions actions, LadderTimings timings);
  ShutdownLadder(const ShutdownLadder&) = delete;
  ShutdownLadder& operator=(const ShutdownLadder&) = delete;

  /// Starts at the first step: quit when `graceful` is false (--force, or no monitor to press
  /// the button through), else the agent (with `agent`) or the power button, which get
  /// `timeout` together. Does nothing if already begun.
  void begin(bool graceful, bool agent, std::chrono::milliseconds timeout);
  /// --force while on the ladder: skips what is left of the agent and ACPI steps.
  void skip_graceful();
  /// QEMU is gone, or is being killed outside the ladder: no further step is taken.
  void stop();

  /// The step reached (the one that worked once QEMU is gone); none before begin().
  LadderStep step() const { return step_; }
  /// Whether begin() was called.
  bool begun() const { return begun_; }
  /// Time since begin(), by the ladder's timer.
  std::chrono::milliseconds elapsed() const;
  /// Power button presses so far.
  int presses() const { return presses_; }

 private:
  void go_to(LadderStep next);
  void press_power_button();
  void after(std::chrono::milliseconds wait, LadderStep next);

  LadderTimer& timer_;
  LadderActions actions_;
  LadderTimings timings_;
  LadderStep step_ = LadderStep::none;
  bool begun_ = false;
  bool stopped_ = false;
  Clock::time_point started_{};
  Clock::time_point graceful_deadline_{};
  int presses_ = 0;
};

}  // namespace qvm::supervisor
