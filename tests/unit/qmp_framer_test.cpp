#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "qvm/qmp.hpp"

namespace qvm {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(QmpFramerTest, SplitsOneChunkIntoLines) {
  QmpFramer framer;
  EXPECT_THAT(framer.feed("{\"a\":1}\n{\"b\":2}\n"), ElementsAre("{\"a\":1}", "{\"b\":2}"));
  EXPECT_EQ(framer.pending(), 0u);
}

TEST(QmpFramerTest, HoldsAnIncompleteLineUntilItsNewline) {
  QmpFramer framer;
  EXPECT_THAT(framer.feed("{\"return\""), IsEmpty());
  EXPECT_EQ(framer.pending(), 9u);
  EXPECT_THAT(framer.feed(": {}}\n{\"ev"), ElementsAre("{\"return\": {}}"));
  EXPECT_EQ(framer.pending(), 4u);
  EXPECT_THAT(framer.feed("ent\": \"STOP\"}\n"), ElementsAre("{\"event\": \"STOP\"}"));
  EXPECT_EQ(framer.pending(), 0u);
}

TEST(QmpFramerTest, StripsCarriageReturns) {
  QmpFramer framer;
  EXPECT_THAT(framer.feed("{\"a\":1}\r\n{\"b\":2}\r"), ElementsAre("{\"a\":1}"));
  // The "\r\n" split across two reads.
  EXPECT_THAT(framer.feed("\n"), ElementsAre("{\"b\":2}"));
}

TEST(QmpFramerTest, KeepsCarriageReturnsInsideALine) {
  QmpFramer framer;
  EXPECT_THAT(framer.feed("a\rb\r\n"), ElementsAre("a\rb"));
}

TEST(QmpFramerTest, SkipsEmptyAndBlankLines) {
  QmpFramer framer;
  EXPECT_THAT(framer.feed("\n\r\n{}\n \t\n\n{}\r\n"), ElementsAre("{}", "{}"));
}

TEST(QmpFramerTest, ReassemblesAMessageFedOneByteAtATime) {
  const std::string message =
      R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}})";
  QmpFramer framer;
  for (char c : message) EXPECT_THAT(framer.feed(std::string_view(&c, 1)), IsEmpty());
  EXPECT_THAT(framer.feed("\r"), IsEmpty());
  EXPECT_THAT(framer.feed("\n"), ElementsAre(message));
}

TEST(QmpFramerTest, ReturnsManyMessagesFromOneChunkInOrder) {
  std::string chunk;
  std::vector<std::string> expected;
  for (int i = 0; i < 1000; ++i) {
    expected.push_back("{\"return\": " + std::to_string(i) + ", \"id\": " + std::to_string(i) +
                       "}");
    chunk += expected.back() + "\n";
  }
  QmpFramer framer;
  EXPECT_EQ(framer.feed(chunk), expected);
}

TEST(QmpFramerTest, AcceptsALineOfExactlyTheCap) {
  QmpFramer framer;
  const std::string line(QmpFramer::kMaxLine, 'x');
  EXPECT_THAT(framer.feed(line), IsEmpty());
  EXPECT_THAT(framer.feed("\r\n"), ElementsAre(line));
}

TEST(QmpFramerTest, AcceptsALineOfExactlyTheCapInOneChunk) {
  QmpFramer framer;
  const std::string line(QmpFramer::kMaxLine, 'x');
  const auto lines = framer.feed(line + "\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].size(), QmpFramer::kMaxLine);
}

TEST(QmpFramerTest, RefusesALineOverTheCapBeforeItsNewline) {
  QmpFramer framer;
  EXPECT_THAT(framer.feed(std::string(QmpFramer::kMaxLine, 'x')), IsEmpty());
  try {
    framer.feed("y");
    FAIL() << "expected QmpDisconnected";
  } catch (const QmpDisconnected& e) {
    EXPECT_STREQ(e.what(), "protocol error: a QMP line exceeded 16 MiB");
  }
  // The framer stays unusable: the stream can no longer be resynchronised.
  EXPECT_THROW(framer.feed("{}\n"), QmpDisconnected);
}

TEST(QmpFramerTest, RefusesALineOverTheCapInOneChunk) {
  QmpFramer framer;
  EXPECT_THROW(framer.feed("{}\n" + std::string(QmpFramer::kMaxLine + 1, 'x') + "\n"),
               QmpDisconnected);
}

TEST(QmpFramerTest, RefusesALineThatGrowsOverTheCapAcrossChunks) {
  QmpFramer framer;
  const std::string chunk(1 << 20, 'x');
  for (int i = 0; i < 16; ++i) ASSERT_THAT(framer.feed(chunk), IsEmpty());
  EXPECT_THROW(framer.feed("x\n"), QmpDisconnected);
}

}  // namespace
}  // namespace qvm
