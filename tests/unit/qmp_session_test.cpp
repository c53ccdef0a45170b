#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "qvm/qmp.hpp"
#include "support/fake_qmp_server.hpp"
#include "support/temp_dir.hpp"

namespace qvm {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using ::testing::ElementsAre;
using testing::FakeQmpServer;
using testing::FakeReply;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

std::vector<std::string> names(const std::vector<QmpEvent>& events) {
  std::vector<std::string> result;
  for (const QmpEvent& event : events) result.push_back(event.name);
  return result;
}

TEST(QmpSessionTest, ConnectsAndRunsCommands) {
  FakeQmpServer server;
  server.expect("query-status", FakeReply::ok({{"status", "running"}, {"running", true}}));
  server.expect("human-monitor-command", {{"command-line", "info version"}},
                FakeReply::ok("7.2.0\r\n"));
  QmpSession session(server.socket_path(), 10s);
  EXPECT_EQ(session.greeting().major, 7);
  EXPECT_EQ(session.execute("query-status"), json({{"status", "running"}, {"running", true}}));
  EXPECT_EQ(session.execute("human-monitor-command", {{"command-line", "info version"}}),
            "7.2.0\r\n");
}

TEST(QmpSessionTest, ErrorReplyThrowsQmpError) {
  FakeQmpServer server;
  server.expect("nope", FakeReply::error("CommandNotFound", "The command nope has not been found"));
  QmpSession session(server.socket_path(), 10s);
  try {
    session.execute("nope");
    FAIL() << "expected QmpError";
  } catch (const QmpError& e) {
    EXPECT_EQ(e.error_class(), "CommandNotFound");
    EXPECT_EQ(e.desc(), "The command nope has not been found");
  }
  server.expect("query-status", FakeReply::ok({{"status", "running"}}));
  EXPECT_EQ(session.execute("query-status")["status"], "running") << "the session goes on";
}

TEST(QmpSessionTest, NoGreetingThrowsQmpTimeoutWithinTheDeadline) {
  FakeQmpServer server(FakeQmpServer::Options().without_greeting());
  const auto start = Clock::now();
  try {
    QmpSession session(server.socket_path(), 300ms);
    FAIL() << "expected QmpTimeout";
  } catch (const QmpTimeout& e) {
    EXPECT_THAT(e.what(), HasSubstr("no QMP greeting from"));
  }
  EXPECT_LT(Clock::now() - start, 1500ms);
}

TEST(QmpSessionTest, MissingSocketThrowsQmpDisconnected) {
  testing::TempDir dir;
  try {
    QmpSession session(dir / "qmp.sock", 10s);
    FAIL() << "expected QmpDisconnected";
  } catch (const QmpDisconnected& e) {
    EXPECT_THAT(e.what(), HasSubstr((dir / "qmp.sock").string()));
    EXPECT_THAT(e.what(), HasSubstr("No such file or directory"));
  }
}

TEST(QmpSessionTest, CommandTimeoutThrowsQmpTimeoutAndTheSessionGoesOn) {
  FakeQmpServer server;
  server.expect("query-status", FakeReply::ok({{"status", "late"}}).after(500ms));
  server.expect("query-name", FakeReply::ok({{"name", "dev"}}).after(700ms));
  QmpSession session(server.socket_path(), 10s);
  const auto start = Clock::now();
  EXPECT_THROW(session.execute("query-status", json::object(), 100ms), QmpTimeout);
  EXPECT_LT(Clock::now() - start, 450ms);
  EXPECT_EQ(session.execute("query-name", json::object(), 10s), json({{"name", "dev"}}));
}

TEST(QmpSessionTest, WaitEventKeepsOtherEventsQueued) {
  FakeQmpServer server;
  server.expect("system_powerdown",
                FakeReply::ok()
                    .preceded_by(FakeQmpServer::event("SHUTDOWN", {{"guest", true}}))
                    .preceded_by(FakeQmpServer::event("POWERDOWN"))
                    .preceded_by(FakeQmpServer::event("STOP")));
  QmpSession session(server.socket_path(), 10s);
  session.execute("system_powerdown");
  const std::optional<QmpEvent> shutdown = session.wait_event("SHUTDOWN", 5s);
  ASSERT_TRUE(shutdown);
  EXPECT_EQ(shutdown->data, json({{"guest", true}}));
  EXPECT_THAT(names(session.take_events()), ElementsAre("STOP", "POWERDOWN"));
  EXPECT_TRUE(session.take_events().empty());
}

TEST(QmpSessionTest, WaitEventWaitsForAnEventStillToCome) {
  FakeQmpServer server;
  QmpSession session(server.socket_path(), 10s);
  server.send_event("RESUME");
  server.send_event("RESET", {{"guest", false}});
  const std::optional<QmpEvent> reset = session.wait_event("RESET", 5s);
  ASSERT_TRUE(reset);
  EXPECT_EQ(reset->data, json({{"guest", false}}));
  EXPECT_THAT(names(session.take_events()), ElementsAre("RESUME"));
}

TEST(QmpSessionTest, WaitEventReturnsTheEarliestOfTwoWithTheSameName) {
  FakeQmpServer server;
  QmpSession session(server.socket_path(), 10s);
  server.send_event("RTC_CHANGE", {{"offset", 1}});
  server.send_event("RTC_CHANGE", {{"offset", 2}});
  ASSERT_EQ(session.wait_event("RTC_CHANGE", 5s)->data["offset"], 1);
  ASSERT_EQ(session.wait_event("RTC_CHANGE", 5s)->data["offset"], 2);
}

TEST(QmpSessionTest, WaitEventReturnsNulloptAfterItsTimeout) {
  FakeQmpServer server;
  QmpSession session(server.socket_path(), 10s);
  server.send_event("STOP");
  const auto start = Clock::now();
  EXPECT_FALSE(session.wait_event("SHUTDOWN", 200ms));
  const auto elapsed = Clock::now() - start;
  EXPECT_GE(elapsed, 190ms);
  EXPECT_LT(elapsed, 1000ms);
  EXPECT_THAT(names(session.take_events()), ElementsAre("STOP"));
}

TEST(QmpSessionTest, WaitEventThrowsWhenTheSessionEndsFirst) {
  FakeQmpServer server;
  QmpSession session(server.socket_path(), 10s);
  server.send_event("STOP");
  server.hang_up();
  const auto start = Clock::now();
  try {
    session.wait_event("SHUTDOWN", 30s);
    FAIL() << "expected QmpDisconnected";
  } catch (const QmpDisconnected& e) {
    EXPECT_THAT(e.what(), HasSubstr("QEMU closed the QMP connection"));
  }
  EXPECT_LT(Clock::now() - start, 5s);
  EXPECT_THAT(names(session.take_events()), ElementsAre("STOP"));
}

TEST(QmpSessionTest, WaitEventStillReturnsAnEventQueuedBeforeTheEnd) {
  FakeQmpServer server;
  server.expect("quit", FakeReply::ok()
                            .preceded_by(FakeQmpServer::event("SHUTDOWN", {{"guest", false}}))
                            .then_hang_up());
  QmpSession session(server.socket_path(), 10s);
  session.execute("quit");
  ASSERT_TRUE(session.wait_closed(5s));
  const std::optional<QmpEvent> shutdown = session.wait_event("SHUTDOWN", 5s);
  ASSERT_TRUE(shutdown);
  EXPECT_EQ(shutdown->data["guest"], false);
}

TEST(QmpSessionTest, WaitClosedSeesThePeerHangUp) {
  FakeQmpServer server;
  QmpSession session(server.socket_path(), 10s);
  EXPECT_FALSE(session.wait_closed(100ms));
  server.hang_up();
  const auto start = Clock::now();
  EXPECT_TRUE(session.wait_closed(30s));
  EXPECT_LT(Clock::now() - start, 5s);
}

TEST(QmpSessionTest, WaitClosedSeesAConnectionReset) {
  FakeQmpServer server;
  QmpSession session(server.socket_path(), 10s);
  server.reset();  // the request below stays unread
  const auto start = Clock::now();
  try {
    session.execute("query-status", json::object(), 30s);
    FAIL() << "expected QmpDisconnected";
  } catch (const QmpDisconnected& e) {
    EXPECT_THAT(e.what(), HasSubstr("Connection reset by peer"));
  }
  EXPECT_LT(Clock::now() - start, 5s);
  EXPECT_TRUE(session.wait_closed(1s));
}

TEST(QmpSessionTest, ExecuteAfterTheEndThrowsImmediately) {
  FakeQmpServer server;
  QmpSession session(server.socket_path(), 10s);
  server.hang_up();
  ASSERT_TRUE(session.wait_closed(10s));
  const auto start = Clock::now();
  EXPECT_THROW(session.execute("query-status", json::object(), 30s), QmpDisconnected);
  EXPECT_LT(Clock::now() - start, 1s);
}

TEST(QmpSessionTest, EofMidReplyThrowsAtOnce) {
  FakeQmpServer server;
  server.expect("query-status", FakeReply::raw("{\"return\": {\"status\": \"runn").then_hang_up());
  QmpSession session(server.socket_path(), 10s);
  const auto start = Clock::now();
  EXPECT_THROW(session.execute("query-status", json::object(), 60s), QmpDisconnected);
  EXPECT_LT(Clock::now() - start, 5s);
}

TEST(QmpSessionTest, DestroyingASessionWithQueuedEventsIsClean) {
  FakeQmpServer server;
  auto session = std::make_unique<QmpSession>(server.socket_path(), 10s);
  server.send_event("STOP");
  ASSERT_TRUE(session->wait_event("STOP", 5s));
  server.send_event("RESUME");
  session.reset();
}

}  // namespace
}  // namespace qvm
