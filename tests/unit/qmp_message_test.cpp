#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "qvm/qmp.hpp"

namespace qvm {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// The message of the QmpDisconnected that parsing `line` throws, or "" if it parses.
std::string protocol_error(std::string_view line) {
  try {
    parse_qmp_message(line);
  } catch (const QmpDisconnected& e) {
    return e.what();
  }
  return "";
}

TEST(QmpMessageTest, ParsesQemusGreeting) {
  const QmpMessage message = parse_qmp_message(
      R"({"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18"}, "capabilities": ["oob"]}})");
  ASSERT_EQ(message.kind, QmpMessage::Kind::greeting);
  EXPECT_EQ(message.greeting.major, 7);
  EXPECT_EQ(message.greeting.minor, 2);
  EXPECT_EQ(message.greeting.micro, 22);
  EXPECT_EQ(message.greeting.package, "Debian 1:7.2+dfsg-7+deb12u18");
  EXPECT_THAT(message.greeting.capabilities, ElementsAre("oob"));
  EXPECT_TRUE(message.id.is_null());
}

TEST(QmpMessageTest, ParsesAGreetingWithoutPackageOrCapabilities) {
  const QmpMessage message = parse_qmp_message(
      R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 8}}, "capabilities": []}})");
  ASSERT_EQ(message.kind, QmpMessage::Kind::greeting);
  EXPECT_EQ(message.greeting.major, 8);
  EXPECT_EQ(message.greeting.package, "");
  EXPECT_TRUE(message.greeting.capabilities.empty());
}

TEST(QmpMessageTest, RefusesAGreetingWithMissingOrWrongFields) {
  for (
      const char* line : {
          R"({"QMP": {}})",
          R"({"QMP": []})",
          R"({"QMP": {"version": {"qemu": {"minor": 2, "major": 7}}, "capabilities": []}})",
          R"({"QMP": {"version": {"qemu": {"micro": "0", "minor": 2, "major": 7}}, "capabilities": []}})",
          R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}}})",
          R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": [1]}})",
          R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 99999999999}}, "capabilities": []}})",
          R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": 1}, "capabilities": []}})",
      }) {
    EXPECT_THAT(protocol_error(line), StartsWith("protocol error: malformed QMP greeting: "))
        << line;
  }
}

TEST(QmpMessageTest, ParsesASuccessWithItsId) {
  const QmpMessage message = parse_qmp_message(R"({"return": {"status": "running"}, "id": 7})");
  ASSERT_EQ(message.kind, QmpMessage::Kind::success);
  EXPECT_EQ(message.value, json({{"status", "running"}}));
  EXPECT_EQ(message.id, json(7));
}

TEST(QmpMessageTest, ParsesASuccessOfAnyTypeWithoutId) {
  const QmpMessage message = parse_qmp_message(R"({"return": [1, 2]})");
  ASSERT_EQ(message.kind, QmpMessage::Kind::success);
  EXPECT_EQ(message.value, json({1, 2}));
  EXPECT_TRUE(message.id.is_null());
}

TEST(QmpMessageTest, KeepsAnIdOfAnyType) {
  EXPECT_EQ(parse_qmp_message(R"({"return": {}, "id": "qvm-3"})").id, json("qvm-3"));
  EXPECT_EQ(parse_qmp_message(R"({"return": {}, "id": {"a": [1]}})").id, json({{"a", {1}}}));
}

TEST(QmpMessageTest, ParsesAnError) {
  const QmpMessage message = parse_qmp_message(
      R"({"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}, "id": 3})");
  ASSERT_EQ(message.kind, QmpMessage::Kind::error);
  EXPECT_EQ(message.value["class"], "CommandNotFound");
  EXPECT_EQ(message.value["desc"], "The command nope has not been found");
  EXPECT_EQ(message.id, json(3));
}

TEST(QmpMessageTest, RefusesAnErrorWithoutClassOrDesc) {
  for (const char* line :
       {R"({"error": {"class": "GenericError"}})", R"({"error": {"desc": "x"}})",
        R"({"error": "GenericError"})", R"({"error": {"class": 1, "desc": "x"}})"}) {
    EXPECT_THAT(protocol_error(line), StartsWith("protocol error: malformed QMP error reply: "))
        << line;
  }
}

TEST(QmpMessageTest, ParsesAnEvent) {
  const std::string line =
      R"({"timestamp": {"seconds": 1700000000, "microseconds": 123456}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}})";
  const QmpMessage message = parse_qmp_message(line);
  ASSERT_EQ(message.kind, QmpMessage::Kind::event);
  EXPECT_EQ(message.event.name, "SHUTDOWN");
  EXPECT_EQ(message.event.data, json({{"guest", false}, {"reason", "host-qmp-quit"}}));
  EXPECT_EQ(message.event.seconds, 1700000000);
  EXPECT_EQ(message.event.microseconds, 123456);
  EXPECT_EQ(message.event.raw, json::parse(line));
  EXPECT_EQ(message.value, json::parse(line));
}

TEST(QmpMessageTest, ParsesAnEventWithoutDataOrTimestamp) {
  const QmpMessage message = parse_qmp_message(R"({"event": "STOP"})");
  ASSERT_EQ(message.kind, QmpMessage::Kind::event);
  EXPECT_EQ(message.event.name, "STOP");
  EXPECT_EQ(message.event.data, json::object());
  EXPECT_EQ(message.event.seconds, 0);
}

TEST(QmpMessageTest, RefusesAMalformedEvent) {
  for (const char* line : {R"({"event": 1})", R"({"event": "STOP", "data": []})",
                           R"({"event": "STOP", "timestamp": 5})",
                           R"({"event": "STOP", "timestamp": {"seconds": 1}})"}) {
    EXPECT_THAT(protocol_error(line), StartsWith("protocol error: malformed QMP event: ")) << line;
  }
}

TEST(QmpMessageTest, RefusesMalformedJsonWithAnExcerpt) {
  EXPECT_EQ(protocol_error(R"({"return": {)"), R"(protocol error: malformed JSON: {"return": {)");
  EXPECT_EQ(protocol_error("garbage"), "protocol error: malformed JSON: garbage");
  EXPECT_EQ(protocol_error(""), "protocol error: malformed JSON: ");
  EXPECT_EQ(protocol_error("{\"return\": \"\xff\"}"),
            "protocol error: malformed JSON: {\"return\": \"\\xff\"}");
}

TEST(QmpMessageTest, RefusesANonObject) {
  EXPECT_EQ(protocol_error("[1, 2]"), "protocol error: expected a JSON object: [1, 2]");
  EXPECT_EQ(protocol_error("42"), "protocol error: expected a JSON object: 42");
}

TEST(QmpMessageTest, RefusesAnObjectThatIsNoQmpMessage) {
  EXPECT_EQ(protocol_error(R"({"id": 1})"),
            R"(protocol error: not a QMP greeting, reply or event: {"id": 1})");
}

TEST(QmpMessageTest, CutsTheExcerptOfALongLine) {
  const std::string message = protocol_error(std::string(100000, '['));
  EXPECT_THAT(message, StartsWith("protocol error: "));
  EXPECT_LT(message.size(), 150u);
  EXPECT_THAT(message, HasSubstr("..."));
}

TEST(QmpMessageTest, EscapesControlBytesInTheExcerpt) {
  EXPECT_EQ(protocol_error("\x01\x1b[0m"), "protocol error: malformed JSON: \\x01\\x1b[0m");
}

TEST(QmpMessageTest, RefusesJsonNestedDeeperThanQemuAllows) {
  const std::string deep = "{\"return\": " + std::string(2000, '[') + std::string(2000, ']') + "}";
  EXPECT_THAT(protocol_error(deep), StartsWith("protocol error: JSON nested too deeply: "));
  const std::string fine = "{\"return\": " + std::string(1000, '[') + std::string(1000, ']') + "}";
  EXPECT_EQ(parse_qmp_message(fine).kind, QmpMessage::Kind::success);
  // Brackets inside strings do not count.
  const std::string quoted = "{\"return\": \"" + std::string(2000, '[') + "\\\"\"}";
  EXPECT_EQ(parse_qmp_message(quoted).kind, QmpMessage::Kind::success);
}

TEST(QmpErrorTest, SaysWhichCommandFailedAndWhy) {
  const QmpError error("cont", "GenericError", "Resetting the Virtual Machine is required");
  EXPECT_STREQ(
      error.what(),
      "QMP command \"cont\" failed: GenericError: Resetting the Virtual Machine is required");
  EXPECT_EQ(error.command(), "cont");
  EXPECT_EQ(error.error_class(), "GenericError");
  EXPECT_EQ(error.desc(), "Resetting the Virtual Machine is required");
}

}  // namespace
}  // namespace qvm
