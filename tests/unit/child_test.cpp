#include "process/child.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <future>
#include <thread>

#include "support/temp_dir.hpp"

namespace qvm::process {
namespace {

namespace fs = std::filesystem;

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Everything `fd` carries until its last writer closes it (at most 10 s).
std::string read_until_closed(int fd) {
  std::string text;
  char buffer[4096];
  for (;;) {
    pollfd entry{fd, POLLIN, 0};
    if (::poll(&entry, 1, 10000) <= 0) return text + "<timed out>";
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n <= 0) return text;
    text.append(buffer, static_cast<std::size_t>(n));
  }
}

TEST(ChildTest, SingleThreadedCountsTheThreadsOfThisProcess) {
  EXPECT_TRUE(single_threaded());
  std::promise<void> release;
  std::thread other([future = release.get_future()]() mutable { future.wait(); });
  EXPECT_FALSE(single_threaded());
  release.set_value();
  other.join();
  EXPECT_TRUE(single_threaded());
}

// The qvm CLI forks its VM's supervisor instead of exec'ing qvm again; the copy must look
// like a freshly spawned program: its own session, default signals, only the fds it was
// given, its output in the log.
TEST(ChildTest, ForkDetachedRunsTheBodyAsASpawnedProgramWouldRun) {
  testing::TempDir dir;
  int report[2];
  ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
  const int stray = ::open("/dev/null", O_RDONLY);  // no O_CLOEXEC: still must not leak
  ASSERT_GE(stray, 0);
  struct sigaction ignore {}, previous {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGINT, &ignore, &previous);
  const pid_t test_pid = ::getpid();
  const pid_t test_session = ::getsid(0);

  SpawnOptions options({}, dir / "body.log", true, {{3, report[1]}});
  fork_detached(options, [test_pid, test_session] {
    std::string facts;
    for (int fd = 0; fd < 256; ++fd) {
      if (::fcntl(fd, F_GETFD) >= 0) facts += std::to_string(fd) + ",";
    }
    char target[256] = {};
    ssize_t n = ::readlink("/proc/self/fd/0", target, sizeof target - 1);
    facts += " stdin=" + std::string(target, n > 0 ? static_cast<std::size_t>(n) : 0);
    // A session of its own, led by the first fork, so it can never get a terminal back.
    const pid_t session = ::getsid(0);
    facts += session != test_session && session != ::getpid() ? " own-session" : " wrong-session";
    facts += ::getppid() == test_pid ? " our-child" : " detached";
    struct sigaction now {};
    ::sigaction(SIGINT, nullptr, &now);
    facts += now.sa_handler == SIG_DFL ? " sigint=default" : " sigint=inherited";
    std::fprintf(stderr, "the body's stderr\n");
    ssize_t written = ::write(3, facts.data(), facts.size());
    return written > 0 ? 0 : 1;
  });
  ::sigaction(SIGINT, &previous, nullptr);
  ::close(report[1]);
  ::close(stray);

  const std::string facts = read_until_closed(report[0]);
  ::close(report[0]);
  EXPECT_EQ(facts, "0,1,2,3, stdin=/dev/null own-session detached sigint=default");
  EXPECT_EQ(read_all(dir / "body.log"), "the body's stderr\n");
}

TEST(ChildTest, RetitleRewritesTheCommandLineWithinItsRoom) {
  int report[2];
  ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
  SpawnOptions options({}, std::nullopt, true, {{3, report[1]}});
  fork_detached(options, [] {
    retitle({"qvm", "__supervise", "web"});
    std::string first = read_all("/proc/self/cmdline");
    retitle({std::string(100000, 'x')});
    std::string second = read_all("/proc/self/cmdline");
    std::string facts = first + "|" + std::to_string(second.size()) + "|" + second.substr(0, 3);
    return ::write(3, facts.data(), facts.size()) > 0 ? 0 : 1;
  });
  ::close(report[1]);
  const std::string facts = read_until_closed(report[0]);
  ::close(report[0]);

  const std::string own = read_all("/proc/self/cmdline");
  const std::string expected_start = std::string("qvm\0__supervise\0web\0", 21);
  ASSERT_GE(facts.size(), expected_start.size());
  EXPECT_EQ(facts.substr(0, expected_start.size()), expected_start);
  // Too long a title is cut to the room the original command line had, never beyond it.
  EXPECT_NE(facts.find("|" + std::to_string(own.size()) + "|xxx"), std::string::npos) << facts.size();
}

}  // namespace
}  // namespace qvm::process
