#include "supervisor/folder_watch.hpp"

#include <gtest/gtest.h>

#include <boost/asio/steady_timer.hpp>
#include <fstream>
#include <memory>
#include <string>

#include "support/temp_dir.hpp"

namespace qvm::supervisor {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The safety-net interval is an hour here, so only inotify can deliver the wake-ups.
TEST(FolderWatchTest, WakesWhenAFileAppearsAndStopsOnceCheckSaysDone) {
  testing::TempDir dir;
  boost::asio::io_context io;
  int checks = 0;
  std::optional<Clock::time_point> seen;
  FolderWatch watch(io, dir.path(), 1h, [&] {
    ++checks;
    if (!fs::exists(dir / "qmp.sock")) return false;
    seen = Clock::now();
    return true;
  });
  io.run_for(50ms);
  EXPECT_EQ(checks, 1) << "one look at once, then nothing until the folder changes";

  std::ofstream(dir / "unrelated.pid") << "1\n";
  io.run_for(50ms);
  EXPECT_EQ(checks, 2);
  EXPECT_FALSE(seen);

  const auto created = Clock::now();
  std::ofstream(dir / "qmp.sock") << "";
  io.run_for(200ms);
  ASSERT_TRUE(seen);
  EXPECT_LT(*seen - created, 100ms);

  const int after_done = checks;
  std::ofstream(dir / "another") << "";
  io.run_for(50ms);
  EXPECT_EQ(checks, after_done) << "check is never called after it returned true";
}

TEST(FolderWatchTest, TheTimerStillLooksWhenTheFolderCannotBeWatched) {
  testing::TempDir dir;
  boost::asio::io_context io;
  int checks = 0;
  FolderWatch watch(io, dir / "missing", 20ms, [&] { return ++checks == 3; });
  io.run_for(300ms);
  EXPECT_EQ(checks, 3);
}

TEST(FolderWatchTest, DestroyingTheWatchCancelsIt) {
  testing::TempDir dir;
  boost::asio::io_context io;
  int checks = 0;
  {
    FolderWatch watch(io, dir.path(), 10ms, [&] {
      ++checks;
      return false;
    });
  }
  std::ofstream(dir / "file") << "";
  io.run_for(50ms);
  EXPECT_EQ(checks, 0);
}

// Found by the demo: the supervisor replaced a FolderWatch whose timer had already fired
// but whose handler had not run yet; cancel() cannot stop that handler, which then ran on
// freed memory. Here an earlier timer's handler destroys the watch in the same turn.
TEST(FolderWatchTest, DestroyedWhileItsWakeUpIsAlreadyQueuedItStaysQuiet) {
  testing::TempDir dir;
  boost::asio::io_context io;
  int checks = 0;
  std::unique_ptr<FolderWatch> watch;
  boost::asio::steady_timer earlier(io, Clock::now());
  earlier.async_wait([&](boost::system::error_code) { watch.reset(); });
  watch = std::make_unique<FolderWatch>(io, dir.path(), 1h, [&] {
    ++checks;
    return false;
  });
  // Both timers have expired before the loop looks: the watch's first one was due at its
  // construction, so any later instant will do, and Asio runs every timer due at once.
  const auto constructed = Clock::now();
  while (Clock::now() <= constructed) {
  }
  io.run_for(100ms);
  EXPECT_FALSE(watch);
  EXPECT_EQ(checks, 0);
}

// This process's inotify descriptors and the watches they hold (/proc/self/fd, fdinfo).
struct InotifyUse {
  int descriptors = 0;
  int watches = 0;
};
InotifyUse inotify_use() {
  InotifyUse use;
  for (const auto& entry : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (fs::read_symlink(entry.path(), ec).string() != "anon_inode:inotify") continue;
    ++use.descriptors;
    std::ifstream info("/proc/self/fdinfo/" + entry.path().filename().string());
    for (std::string line; std::getline(info, line);) use.watches += line.rfind("inotify wd:", 0) == 0;
  }
  return use;
}

// Closing an inotify descriptor waits until the kernel has destroyed its watches, an SRCU
// grace period of several milliseconds; when the QMP socket watch closed it on success,
// every start connected that much later. Stopping removes the watch at once and leaves the
// close to the destructor, by when the kernel has long finished.
TEST(FolderWatchTest, StoppingDropsTheWatchAndLeavesTheCloseToTheDestructor) {
  testing::TempDir dir;
  boost::asio::io_context io;
  const InotifyUse before = inotify_use();
  {
    FolderWatch watch(io, dir.path(), 1h, [&] { return fs::exists(dir / "qmp.sock"); });
    io.run_for(20ms);
    EXPECT_EQ(inotify_use().descriptors, before.descriptors + 1);
    EXPECT_EQ(inotify_use().watches, before.watches + 1);

    std::ofstream(dir / "qmp.sock") << "";
    io.run_for(100ms);
    EXPECT_EQ(inotify_use().descriptors, before.descriptors + 1) << "stopped, but not closed yet";
    EXPECT_EQ(inotify_use().watches, before.watches) << "the folder is no longer watched";
  }
  EXPECT_EQ(inotify_use().descriptors, before.descriptors);
}

}  // namespace
}  // namespace qvm::supervisor
