#include "supervisor/shutdown_ladder.hpp"

#include <signal.h>

#include <algorithm>
#include <utility>

namespace qvm::supervisor {

std::string_view to_string(LadderStep step) {
  switch (step) {
    case LadderStep::none: return "";
    case LadderStep::agent: return "agent";
    case LadderStep::acpi: return "acpi";
    case LadderStep::quit: return "quit";
    case LadderStep::sigterm: return "sigterm";
    case LadderStep::sigkill: return "sigkill";
  }
  return "";
}

void AsioLadderTimer::arm(Clock::time_point at, std::function<void()> fire) {
  timer_.expires_at(at);
  timer_.async_wait([fire = std::move(fire)](boost::system::error_code ec) {
    if (!ec) fire();
  });
}

ShutdownLadder::ShutdownLadder(LadderTimer& timer, LadderActions actions, LadderTimings timings)
    : timer_(timer), actions_(std::move(actions)), timings_(timings) {}

void ShutdownLadder::begin(bool graceful, bool agent, std::chrono::milliseconds timeout) {
  if (begun_) return;
  begun_ = true;
  stopped_ = false;  // stop() at the exit of an earlier run that was not stopped on purpose
  started_ = timer_.now();
  if (!graceful) return go_to(LadderStep::quit);
  // Saturates: a control request may ask for ~31 years.
  const auto room = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::time_point::max() - started_);
  graceful_deadline_ = timeout >= room ? Clock::time_point::max() : started_ + timeout;
  go_to(agent ? LadderStep::agent : LadderStep::acpi);
}

void ShutdownLadder::skip_graceful() {
  if (stopped_) return;
  if (step_ == LadderStep::acpi || step_ == LadderStep::agent) go_to(LadderStep::quit);
}

void ShutdownLadder::stop() {
  stopped_ = true;
  timer_.cancel();
}

std::chrono::milliseconds ShutdownLadder::elapsed() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(timer_.now() - started_);
}

void ShutdownLadder::go_to(LadderStep next) {
  step_ = next;
  timer_.cancel();
  actions_.entered(step_);
  switch (step_) {
    case LadderStep::agent:
      // The guest agent shuts the guest down from inside, which works even where ACPI is
      // not handled; if it does not answer, the power button is next.
      actions_.progress("asking the guest agent to shut the guest down");
      return actions_.ask_agent([this](bool accepted) {
        if (step_ != LadderStep::agent || stopped_) return;
        if (!accepted) return go_to(LadderStep::acpi);
        timer_.arm(graceful_deadline_, [this] { go_to(LadderStep::quit); });
      });
    case LadderStep::acpi:
      // A paused guest cannot see the power button: let it run so it can shut down.
      actions_.resume();
      return press_power_button();
    case LadderStep::quit:
      actions_.progress("asking QEMU to quit");
      actions_.quit();
      return after(timings_.quit_wait, LadderStep::sigterm);
    case LadderStep::sigterm:
      actions_.progress("sending SIGTERM to QEMU");
      actions_.signal(SIGTERM);
      return after(timings_.term_wait, LadderStep::sigkill);
    case LadderStep::sigkill:
      actions_.progress("sending SIGKILL to QEMU");
      actions_.signal(SIGKILL);
      return;
    case LadderStep::none: return;
  }
}

void ShutdownLadder::press_power_button() {
  if (step_ != LadderStep::acpi || stopped_) return;
  if (timer_.now() >= graceful_deadline_) return go_to(LadderStep::quit);
  ++presses_;
  actions_.progress("pressed the ACPI power button" +
                    (presses_ > 1 ? " (" + std::to_string(presses_) + ")" : std::string()));
  actions_.press_button();
  const Clock::time_point now = timer_.now();
  const Clock::time_point next =
      timings_.acpi_repeat > graceful_deadline_ - now ? graceful_deadline_ : now + timings_.acpi_repeat;
  timer_.arm(next, [this] { press_power_button(); });
}

void ShutdownLadder::after(std::chrono::milliseconds wait, LadderStep next) {
  timer_.arm(timer_.now() + wait, [this, next] {
    if (!stopped_) go_to(next);
  });
}

}  // namespace qvm::supervisor
