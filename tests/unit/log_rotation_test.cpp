// A VM's logs are capped: rotated to one .1 copy, read back across the rotation.
#include "store/log_rotation.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <atomic>
#include <optional>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "qvm/profile.hpp"
#include "qvm/vm.hpp"
#include "store/vm_store.hpp"
#include "supervisor/log_rotation.hpp"
#include "supervisor/serial_watch.hpp"
#include "support/temp_dir.hpp"
#include "support/test_guest.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using store::LogFollower;
using store::rotate_log_if_over;
using store::rotated_log;

constexpr std::uint64_t kCap = 64 * 1024;

class EverythingExists : public FileChecker {
 public:
  bool exists(const fs::path&) const override { return true; }
};

std::uint64_t size_of(const fs::path& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  return ec ? 0 : size;
}

// Bytes the file system really holds for `path` (a sparse file holds fewer than its size).
std::uint64_t allocated(const fs::path& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_blocks) * 512 : 0;
}

long count_lines(const fs::path& path) {
  const std::string text = testing::read_file(path);
  return std::count(text.begin(), text.end(), '\n');
}

std::string numbered_line(int i) { return "line " + std::to_string(i) + " " + std::string(40, 'x') + "\n"; }

// Every line "line N ..." in `text`, as N, in order.
std::vector<int> line_numbers(const std::string& text) {
  std::vector<int> numbers;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("line ", 0) == 0) numbers.push_back(std::stoi(line.substr(5)));
  }
  return numbers;
}

// A writer like QEMU: one descriptor opened once with O_APPEND (chardev logappend=on, and
// the supervisor's qemu.log), kept open across rotations.
class AppendingWriter {
 public:
  explicit AppendingWriter(const fs::path& path)
      : fd_(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) {}
  ~AppendingWriter() { ::close(fd_); }
  void write(const std::string& text) { ASSERT_EQ(::write(fd_, text.data(), text.size()), static_cast<ssize_t>(text.size())); }

 private:
  int fd_;
};

// A fresh folder under `base` ("" for the test's usual temp folder), removed afterwards.
class Folder {
 public:
  explicit Folder(const std::string& base) {
    if (base.empty()) {
      temp_.emplace();
      path_ = temp_->path();
    } else {
      std::string pattern = base + "/qvm-test-XXXXXX";
      if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
    }
  }
  ~Folder() {
    std::error_code ec;
    if (!temp_ && !path_.empty()) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::optional<testing::TempDir> temp_;
  fs::path path_;
};

// The rotation itself, on the test's usual file system (ext4 here: whole blocks are cut
// off the front) and on tmpfs (copied and truncated).
class LogRotationTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (dir_.path().empty()) GTEST_SKIP() << "cannot create a folder in " << GetParam();
  }
  Folder dir_{GetParam()};
  fs::path log_ = dir_ / "serial.log";
};

INSTANTIATE_TEST_SUITE_P(, LogRotationTest, ::testing::Values(std::string(), std::string("/dev/shm")),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param.empty() ? std::string("TempDir") : std::string("Tmpfs");
                         });

// What reading the log back, .1 first, yields.
std::string both(const fs::path& log) {
  std::string text;
  if (fs::exists(rotated_log(log))) text = testing::read_file(rotated_log(log));
  if (fs::exists(log)) text += testing::read_file(log);
  return text;
}

// The journal and the readers built on the rotation.
class LogReadersTest : public ::testing::Test {
 protected:
  testing::TempDir dir_;
  fs::path log_ = dir_ / "serial.log";
};

TEST_P(LogRotationTest, BelowTheCapNothingMoves) {
  AppendingWriter writer(log_);
  writer.write(std::string(kCap - 1, 'a'));
  EXPECT_FALSE(rotate_log_if_over(log_, kCap));
  EXPECT_EQ(size_of(log_), kCap - 1);
  EXPECT_FALSE(fs::exists(rotated_log(log_)));
  EXPECT_FALSE(rotate_log_if_over(dir_ / "missing.log", kCap));
}

TEST_P(LogRotationTest, AtTheCapTheLogMovesToDot1AndTheOpenWriterGoesOnAtItsNewEnd) {
  AppendingWriter writer(log_);
  writer.write(std::string(kCap, 'a'));
  ASSERT_TRUE(rotate_log_if_over(log_, kCap));
  EXPECT_EQ(both(log_), std::string(kCap, 'a'));
  // At most the last block stays: .1 took the rest.
  EXPECT_LE(size_of(log_), 4096u);
  EXPECT_GE(size_of(rotated_log(log_)), kCap - 4096);
  // The writer's next bytes land at the log's new end, not at its old offset: no hole.
  const std::uint64_t left = size_of(log_);
  writer.write("ZZZZZ\n");
  EXPECT_EQ(size_of(log_), left + 6);
  EXPECT_LE(allocated(log_), 8192u);
  EXPECT_TRUE(testing::read_file(log_).ends_with("ZZZZZ\n"));
  writer.write(std::string(kCap, 'b'));
  const std::string second = testing::read_file(log_);
  ASSERT_TRUE(rotate_log_if_over(log_, kCap));
  // The previous .1 is replaced, not kept beside.
  EXPECT_EQ(both(log_), second);
  const std::string rotated = testing::read_file(rotated_log(log_));
  EXPECT_EQ(rotated.find(std::string(4097, 'a')), std::string::npos) << "the old .1 is gone";
  EXPECT_FALSE(fs::exists(dir_ / "serial.log.2"));
  EXPECT_FALSE(fs::exists(dir_ / "serial.log.1.tmp"));
}

TEST_P(LogRotationTest, AFloodingWriterNeverTakesMoreThanTwiceTheCap) {
  AppendingWriter writer(log_);
  const std::string chunk(4096, 'y');
  std::uint64_t most = 0;
  for (int i = 0; i < 2000; ++i) {  // 8 MiB through a 64 KiB cap
    writer.write(chunk);
    rotate_log_if_over(log_, kCap);
    most = std::max(most, allocated(log_) + allocated(rotated_log(log_)));
    most = std::max(most, size_of(log_) + size_of(rotated_log(log_)));
  }
  EXPECT_LE(most, 2 * kCap + 2 * chunk.size());
}

TEST_P(LogRotationTest, ALogLeftFarAboveTheCapKeepsOnlyItsNewestCap) {
  AppendingWriter writer(log_);
  writer.write(std::string(3 * kCap, 'o') + "newest");
  ASSERT_TRUE(rotate_log_if_over(log_, kCap));
  const std::string kept = testing::read_file(rotated_log(log_));
  EXPECT_EQ(kept.size(), kCap);
  EXPECT_TRUE(kept.ends_with("newest"));
}

TEST_P(LogRotationTest, FollowerReadsDot1ThenTheCurrentFile) {
  AppendingWriter writer(log_);
  std::string all;
  for (int i = 0; i < 2000; ++i) all += numbered_line(i);
  writer.write(all.substr(0, kCap + 10));
  ASSERT_TRUE(rotate_log_if_over(log_, kCap));
  writer.write(all.substr(kCap + 10));
  EXPECT_EQ(store::read_log_with_rotated(log_), all);
  LogFollower follower(log_);
  EXPECT_EQ(follower.read_new(), all);
  EXPECT_EQ(follower.read_new(), "");
}

TEST_P(LogRotationTest, FollowerAcrossRotationsLosesAndRepeatsNothing) {
  AppendingWriter writer(log_);
  LogFollower follower(log_);
  std::string seen;
  int next = 0;
  // Uneven steps, so reads fall before, after and between rotations.
  for (int round = 0; round < 400; ++round) {
    for (int i = 0; i < 1 + round % 37; ++i) writer.write(numbered_line(next++));
    if (round % 3 == 0) rotate_log_if_over(log_, kCap);
    if (round % 5 != 4) seen += follower.read_new();
  }
  seen += follower.read_new();
  const std::vector<int> numbers = line_numbers(seen);
  ASSERT_EQ(numbers.size(), static_cast<std::size_t>(next));
  for (int i = 0; i < next; ++i) ASSERT_EQ(numbers[static_cast<std::size_t>(i)], i);
}

TEST_P(LogRotationTest, FollowerNeverRepeatsWhenTwoRotationsPassBetweenReads) {
  AppendingWriter writer(log_);
  LogFollower follower(log_);
  std::string seen;
  int next = 0;
  for (int round = 0; round < 50; ++round) {
    // Two whole generations between reads: some lines are lost, none may come twice.
    for (int rotation = 0; rotation < 2; ++rotation) {
      while (size_of(log_) < kCap) writer.write(numbered_line(next++));
      ASSERT_TRUE(rotate_log_if_over(log_, kCap));
    }
    writer.write(numbered_line(next++));
    seen += follower.read_new();
  }
  const std::vector<int> numbers = line_numbers(seen);
  ASSERT_FALSE(numbers.empty());
  for (std::size_t i = 1; i < numbers.size(); ++i) ASSERT_LT(numbers[i - 1], numbers[i]);
  EXPECT_EQ(numbers.back(), next - 1);
}

TEST_P(LogRotationTest, FollowerFromAnOffsetReadsOnlyWhatComesAfterIt) {
  AppendingWriter writer(log_);
  writer.write("old\n");
  LogFollower follower(log_, size_of(log_));
  EXPECT_EQ(follower.read_new(), "");
  writer.write(std::string(kCap, 'a') + "\n");
  ASSERT_TRUE(rotate_log_if_over(log_, kCap));
  writer.write("new\n");
  EXPECT_EQ(follower.read_new(), std::string(kCap, 'a') + "\nnew\n");
}

// A log that grew past twice its cap before it could rotate keeps only its last cap bytes
// in .1; a follower that had read into that part goes on after what it read, not again
// from the start of .1.
TEST_P(LogRotationTest, FollowerNeverRepeatsWhenARotationKeepsOnlyTheEndOfAnOversizedLog) {
  AppendingWriter writer(log_);
  LogFollower follower(log_);
  int next = 0;
  while (size_of(log_) < 2 * kCap + kCap / 5) writer.write(numbered_line(next++));
  std::string seen = follower.read_new();
  while (size_of(log_) < 2 * kCap + kCap / 2) writer.write(numbered_line(next++));
  ASSERT_TRUE(rotate_log_if_over(log_, kCap));
  ASSERT_LE(size_of(rotated_log(log_)), kCap);
  writer.write(numbered_line(next++));
  seen += follower.read_new();
  const std::vector<int> numbers = line_numbers(seen);
  ASSERT_EQ(numbers.size(), static_cast<std::size_t>(next));
  for (int i = 0; i < next; ++i) ASSERT_EQ(numbers[static_cast<std::size_t>(i)], i);
}

// How many descriptors of this process are open on `path`.
int open_descriptors_on(const fs::path& path) {
  int count = 0;
  for (const auto& entry : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (fs::read_symlink(entry.path(), ec) == path) ++count;
  }
  return count;
}

// Two rotations that waited for the same reader: the first moves the log to .1, the second
// finds it short and leaves it (rotating again would replace that generation in .1 with
// the few bytes written since, before the reader got to it).
TEST_P(LogRotationTest, TwoRotationsWaitingForTheSameReaderRotateOnce) {
  AppendingWriter writer(log_);
  std::string generation;
  for (int i = 0; generation.size() < kCap; ++i) generation += numbered_line(i);
  writer.write(generation);
  const int reader = ::open(log_.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  ASSERT_EQ(::flock(reader, LOCK_SH), 0);
  const int open_before = open_descriptors_on(log_);
  std::atomic<int> rotated{0};
  auto rotate = [&] { rotated += rotate_log_if_over(log_, kCap, 30s, false) ? 1 : 0; };
  std::thread first(rotate);
  std::thread second(rotate);
  // Both have the log open and found it over the cap: nothing can change it while the
  // reader holds it.
  const bool both_waiting = testing::eventually([&] { return open_descriptors_on(log_) == open_before + 2; }, 10s);
  ::close(reader);
  first.join();
  second.join();
  ASSERT_TRUE(both_waiting);
  EXPECT_EQ(rotated.load(), 1);
  EXPECT_EQ(testing::read_file(rotated_log(log_)), generation);
  EXPECT_EQ(size_of(log_), 0u);
}

// Appenders (the journal) and a rotating process at once: every line is kept exactly once,
// because a line is never written while a rotation copies and truncates. LogFollower
// promises this to a reader that is at most one rotation behind (lines of a generation it
// skipped entirely are lost, by contract), so the appender lets the reader fall at most
// 500 lines (about 25 KiB, under half a generation) behind: on a loaded machine the reader
// thread may otherwise not run while several generations pass. Like `logs -f`, the reader
// reads when there is news (here: 50 more lines), not back to back, which would hold the
// log's shared lock nearly all the time and starve the rotations.
TEST_P(LogRotationTest, ConcurrentAppendsRotationsAndReadsKeepEveryLineOnce) {
  const fs::path journal = dir_ / "events.jsonl";
  constexpr int kLines = 6000;
  constexpr int kMaxLag = 500;
  std::atomic<bool> done{false};
  std::atomic<int> lines_seen{0};
  std::atomic<int> lines_written{0};
  std::string seen;
  std::thread reader([&] {
    LogFollower follower(journal);
    while (!done) {
      while (!done && lines_written.load() - lines_seen.load() < 50) std::this_thread::yield();
      const std::string chunk = follower.read_new();
      seen += chunk;
      lines_seen += static_cast<int>(std::count(chunk.begin(), chunk.end(), '\n'));
    }
    seen += follower.read_new();
  });
  std::thread rotator([&] {
    while (!done) rotate_log_if_over(journal, kCap);
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool reader_kept_up = true;
  for (int i = 0; i < kLines && reader_kept_up; ++i) {
    while (i - lines_seen.load() > kMaxLag && reader_kept_up) {
      reader_kept_up = std::chrono::steady_clock::now() < deadline;
      std::this_thread::yield();
    }
    std::string line = numbered_line(i);
    line.pop_back();
    store::append_to_log(journal, line, kCap);
    ++lines_written;
  }
  done = true;
  reader.join();
  rotator.join();
  ASSERT_TRUE(reader_kept_up) << "the reader saw " << lines_seen << " lines in 60 s";
  const std::vector<int> numbers = line_numbers(seen);
  ASSERT_EQ(numbers.size(), static_cast<std::size_t>(kLines));
  for (int i = 0; i < kLines; ++i) ASSERT_EQ(numbers[static_cast<std::size_t>(i)], i);
  EXPECT_LE(size_of(journal) + size_of(rotated_log(journal)), 2 * kCap + 200);
}

TEST_F(LogReadersTest, TheJournalIsCappedAndReadAcrossItsRotation) {
  store::VmStore store(dir_ / "state", dir_ / "run");
  EverythingExists files;
  store.define(parse_profile("name = \"j\"\n", dir_ / "j.toml", {{}, std::nullopt, &files}));
  const fs::path events = store.paths("j").state_dir / "events.jsonl";
  for (int i = 0; i < 3000; ++i) {
    store.append_event("j", {{"time", "t"}, {"event", "E" + std::to_string(i)}, {"data", std::string(50, 'd')}}, kCap);
    ASSERT_LE(size_of(events) + size_of(rotated_log(events)), 2 * kCap + 200);
  }
  ASSERT_TRUE(fs::exists(rotated_log(events)));
  auto inventory = Inventory::open(dir_ / "state");
  const auto journal = inventory->get("j").journal();
  ASSERT_FALSE(journal.empty());
  EXPECT_EQ(journal.back()["event"], "E2999");
  // Every entry of both files, not only the current one's.
  const std::string text = both(events);
  EXPECT_EQ(journal.size(), static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')));
  EXPECT_GT(journal.size(), static_cast<std::size_t>(count_lines(events)));
  // .1 first, then the current file: one unbroken run of entries.
  const int first = std::stoi(journal.front()["event"].get<std::string>().substr(1));
  for (std::size_t i = 0; i < journal.size(); ++i) {
    ASSERT_EQ(journal[i]["event"], "E" + std::to_string(first + static_cast<int>(i)));
  }
}

// Written as the supervisor's rotation leaves it: the entries the caller had seen are now in
// events.jsonl.1, the new one in events.jsonl.
TEST_F(LogReadersTest, WaitForEventFindsAnEventWrittenAfterARotation) {
  auto inventory = Inventory::open(dir_ / "state");
  EverythingExists files;
  Vm vm = inventory->define(parse_profile("name = \"w\"\n", dir_ / "w.toml", {{}, std::nullopt, &files}));
  const fs::path events = dir_ / "state" / "vms" / "w" / "events.jsonl";
  {
    std::ofstream out(events);
    for (int i = 0; i < 5; ++i) out << R"({"event": "QVM_FILLER", "data": {"i": )" << i << "}}\n";
  }
  const std::size_t after = vm.journal().size();
  ASSERT_EQ(after, 5u);
  fs::rename(events, rotated_log(events));
  std::ofstream(events) << R"({"event": "STOP", "data": {}})" << "\n";
  EXPECT_EQ(vm.journal().size(), 6u);
  EXPECT_TRUE(vm.wait_for_event("STOP", after, 0ms));
}

// The readiness watch goes on matching when the supervisor rotates serial.log under it.
TEST_F(LogReadersTest, SerialWatchMatchesAcrossARotation) {
  AppendingWriter writer(log_);
  writer.write(std::string(kCap, 'b') + "\n");
  const std::uint64_t offset = size_of(log_);
  boost::asio::io_context io;
  std::optional<std::string> matched;
  supervisor::SerialWatch watch(io, log_, offset, std::regex("ready"), [&](const std::string& m) { matched = m; });
  io.run_for(50ms);
  ASSERT_TRUE(rotate_log_if_over(log_, kCap));
  writer.write("qvm-test-guest: ready\n");
  io.restart();
  for (int i = 0; i < 40 && !matched; ++i) io.run_for(50ms);
  EXPECT_EQ(matched, "ready");
}

// The supervisor's watch: a guest flooding serial.log through QEMU's descriptor is kept
// within twice the cap, and it wakes on the write rather than on a clock.
TEST_F(LogReadersTest, RotatorKeepsAFloodedLogUnderTwiceTheCap) {
  AppendingWriter writer(log_);
  boost::asio::io_context io;
  supervisor::LogRotator rotator(io, dir_.path(), {log_, dir_ / "qemu.log"}, kCap, {}, 5ms, 10s);
  std::uint64_t most = 0;
  const std::string chunk(2048, 'f');
  for (int i = 0; i < 1024; ++i) {  // 2 MiB
    writer.write(chunk);
    io.run_for(1ms);
    most = std::max(most, size_of(log_) + size_of(rotated_log(log_)));
  }
  for (int i = 0; i < 100 && size_of(log_) >= kCap; ++i) io.run_for(10ms);
  EXPECT_GE(rotator.rotations(), 20u);
  EXPECT_LT(size_of(log_), kCap);
  // What a check interval lets through beyond the cap, twice (the current file and .1).
  EXPECT_LE(most, 2 * kCap + 2 * 16 * chunk.size());
}

}  // namespace
}  // namespace qvm
