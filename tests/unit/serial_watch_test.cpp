#include "supervisor/serial_watch.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <optional>

#include "support/temp_dir.hpp"

namespace qvm::supervisor {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class SerialWatchTest : public ::testing::Test {
 protected:
  void append(const std::string& text) {
    std::ofstream out(log_, std::ios::app | std::ios::binary);
    out << text;
  }

  // Runs the watch until it matches or `limit` passes; the text it matched, if any.
  std::optional<std::string> watch(const std::string& pattern, std::uint64_t offset = 0,
                                   std::chrono::milliseconds limit = 1500ms) {
    boost::asio::io_context io;
    std::optional<std::string> matched;
    SerialWatch watch(io, log_, offset, std::regex(pattern), [&](const std::string& m) { matched = m; });
    io.run_for(limit);
    return matched;
  }

  testing::TempDir dir_;
  fs::path log_ = dir_ / "serial.log";
};

TEST_F(SerialWatchTest, MatchesALineAndAPromptWithoutNewline) {
  append("booting\r\nqvm-test-guest: ready\r\n");
  EXPECT_EQ(watch("qvm-test-guest: ready"), "qvm-test-guest: ready");
  append("debian login: ");
  EXPECT_EQ(watch("[a-z]+ login:"), "debian login:");
}

TEST_F(SerialWatchTest, StartsAtTheOffsetAndDoesNotMatchAcrossLines) {
  append("ready\n");
  const auto size = fs::file_size(log_);
  EXPECT_EQ(watch("ready", size, 400ms), std::nullopt);
  append("rea\ndy\n");
  EXPECT_EQ(watch("ready", size, 400ms), std::nullopt);
}

TEST_F(SerialWatchTest, AnEndlessLineFromTheGuestNeitherCrashesNorHidesTheNextLine) {
  // 8 MiB without a newline: a backtracking search over all of it would overflow the stack.
  append(std::string(8 << 20, 'a'));
  EXPECT_EQ(watch(".*c", 0, 400ms), std::nullopt);
  EXPECT_EQ(watch("[a-z]+ login:", 0, 400ms), std::nullopt);
  append("\nbox login: ");
  EXPECT_EQ(watch("[a-z]+ login:"), "box login:");
  // The tail of an overlong line still matches.
  append("\n" + std::string(1 << 20, 'x') + " ready");
  EXPECT_EQ(watch("x ready$"), "x ready");
}

}  // namespace
}  // namespace qvm::supervisor
