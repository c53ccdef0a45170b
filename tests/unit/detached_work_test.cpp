// Blocking work off the loop: outcomes come back on the io_context, cancel() drops them, and
// nothing waits for a thread that is still busy.
#include "supervisor/detached_work.hpp"

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <thread>

namespace qvm::supervisor {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;

// Runs `io` until `done` or `limit`.
template <typename Done>
void run_until(asio::io_context& io, Done done, std::chrono::milliseconds limit = 5s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < end) {
    io.run_for(10ms);
    io.restart();
  }
}

TEST(DetachedWorkTest, TheOutcomeRunsOnTheLoopThread) {
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  DetachedWork work(io);
  std::optional<bool> ok;
  std::thread::id where;
  work.run([](const std::atomic<bool>&) {}, [&](bool succeeded) {
    ok = succeeded;
    where = std::this_thread::get_id();
  });
  run_until(io, [&] { return ok.has_value(); });
  EXPECT_EQ(ok, true);
  EXPECT_EQ(where, std::this_thread::get_id());
}

TEST(DetachedWorkTest, AThrowingWorkIsReportedAsFailed) {
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  DetachedWork work(io);
  std::optional<bool> ok;
  work.run([](const std::atomic<bool>&) { throw std::runtime_error("no agent"); }, [&](bool succeeded) { ok = succeeded; });
  run_until(io, [&] { return ok.has_value(); });
  EXPECT_EQ(ok, false);
}

TEST(DetachedWorkTest, CancelReturnsAtOnceAndDropsTheOutcomeOfBusyWork) {
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  DetachedWork work(io);
  std::atomic<bool> started{false};
  std::atomic<bool> saw_cancel{false};
  bool called = false;
  work.run(
      [&](const std::atomic<bool>& cancelled) {
        started = true;
        while (!cancelled) std::this_thread::sleep_for(1ms);
        saw_cancel = true;
      },
      [&](bool) { called = true; });
  run_until(io, [&] { return started.load(); });
  const auto before = std::chrono::steady_clock::now();
  work.cancel();
  EXPECT_LT(std::chrono::steady_clock::now() - before, 100ms);
  run_until(io, [&] { return saw_cancel.load(); });
  run_until(io, [] { return false; }, 100ms);
  EXPECT_TRUE(saw_cancel);
  EXPECT_FALSE(called);
}

TEST(DetachedWorkTest, WorkAfterACancelIsDeliveredAgain) {
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  DetachedWork work(io);
  work.cancel();
  std::optional<bool> ok;
  work.run([](const std::atomic<bool>&) {}, [&](bool succeeded) { ok = succeeded; });
  run_until(io, [&] { return ok.has_value(); });
  EXPECT_EQ(ok, true);
}

TEST(DetachedWorkTest, AnOutcomeQueuedBeforeCancelIsDroppedToo) {
  asio::io_context io;
  DetachedWork work(io);
  std::atomic<bool> finished{false};
  bool called = false;
  work.run([&](const std::atomic<bool>&) { finished = true; }, [&](bool) { called = true; });
  // The loop does not run: the outcome waits in the queue until after cancel().
  while (!finished) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(20ms);
  work.cancel();
  io.run_for(50ms);
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace qvm::supervisor
