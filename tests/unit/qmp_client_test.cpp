#include <gmock/gmock.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <thread>

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

// What a reply handler was called with.
struct Outcome {
  int calls = 0;
  std::exception_ptr error;
  json value;
  bool done() const { return calls > 0; }
};

QmpClient::ReplyHandler record(const std::shared_ptr<Outcome>& outcome) {
  return [outcome](std::exception_ptr error, json value) {
    ++outcome->calls;
    outcome->error = error;
    outcome->value = std::move(value);
  };
}

// The exception in `error` if it is an E.
template <typename E>
std::optional<E> error_as(const std::exception_ptr& error) {
  if (!error) return std::nullopt;
  try {
    std::rethrow_exception(error);
  } catch (const E& e) {
    return e;
  } catch (...) {
  }
  return std::nullopt;
}

std::string describe(const std::exception_ptr& error) {
  if (!error) return "no error";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  }
}

class QmpClientTest : public ::testing::Test {
 protected:
  // Runs the client's io_context until `done()`; false after `timeout`. `done()` is checked at
  // least every 5 ms, as it may depend on the server thread.
  bool run_until(const std::function<bool()>& done, Clock::duration timeout = 10s) {
    const auto deadline = Clock::now() + timeout;
    while (!done()) {
      if (Clock::now() >= deadline) return false;
      io_.restart();
      if (io_.run_one_for(5ms) == 0 && io_.stopped()) std::this_thread::sleep_for(1ms);
    }
    return true;
  }

  // Runs whatever is ready without waiting.
  void poll() {
    io_.restart();
    io_.poll();
  }

  // Connects `client` to `server` and asserts the handshake succeeded.
  void connect(QmpClient& client, const FakeQmpServer& server) {
    auto result = std::make_shared<std::optional<std::exception_ptr>>();
    client.async_connect(
        server.socket_path(), 10s,
        [result](std::exception_ptr error, const QmpGreeting&) { *result = error; });
    ASSERT_TRUE(run_until([&] { return result->has_value(); })) << "no handshake";
    ASSERT_FALSE(**result) << describe(**result);
  }

  // Starts a connect and returns where its outcome lands.
  std::shared_ptr<std::optional<std::exception_ptr>> start_connect(
      QmpClient& client, const std::filesystem::path& path, Clock::duration timeout = 10s) {
    auto result = std::make_shared<std::optional<std::exception_ptr>>();
    client.async_connect(
        path, timeout, [result](std::exception_ptr error, const QmpGreeting&) { *result = error; });
    return result;
  }

  std::shared_ptr<Outcome> execute(QmpClient& client, const std::string& command,
                                   Clock::duration timeout = 10s, json arguments = nullptr) {
    auto outcome = std::make_shared<Outcome>();
    client.async_execute(command, std::move(arguments), timeout, record(outcome));
    return outcome;
  }

  boost::asio::io_context io_;
};

TEST_F(QmpClientTest, HandshakeReadsTheGreetingAndNegotiatesCapabilities) {
  FakeQmpServer server;
  QmpClient client(io_.get_executor());
  EXPECT_FALSE(client.connected());
  connect(client, server);

  EXPECT_TRUE(client.connected());
  EXPECT_EQ(client.greeting().major, 7);
  EXPECT_EQ(client.greeting().minor, 2);
  EXPECT_EQ(client.greeting().micro, 0);
  EXPECT_EQ(client.greeting().package, "v7.2.0");
  EXPECT_THAT(client.greeting().capabilities, ElementsAre("oob"));
  const std::vector<json> received = server.received();
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0]["execute"], "qmp_capabilities");
  EXPECT_TRUE(received[0].contains("id"));
  EXPECT_FALSE(received[0].contains("arguments"));
}

TEST_F(QmpClientTest, ConnectCompletesOnlyWhenCapabilitiesAreAccepted) {
  FakeQmpServer server(FakeQmpServer::Options().without_negotiation());
  server.expect("qmp_capabilities", FakeReply::ok().after(300ms));
  QmpClient client(io_.get_executor());
  auto result = start_connect(client, server.socket_path());

  ASSERT_TRUE(run_until([&] { return server.received().size() == 1; }));
  // The client has read the greeting (it answered it); once it has nothing left to do but
  // wait for the reply, due in 300 ms, it would have said ready if the greeting sufficed.
  do {
    io_.restart();
  } while (io_.poll() > 0);
  EXPECT_FALSE(result->has_value()) << "the greeting alone does not make QMP ready";
  EXPECT_FALSE(client.connected());
  ASSERT_TRUE(run_until([&] { return result->has_value(); }));
  EXPECT_FALSE(**result) << describe(**result);
  EXPECT_TRUE(client.connected());
}

TEST_F(QmpClientTest, EventsDuringTheHandshakeAreDeliveredInOrder) {
  FakeQmpServer server(FakeQmpServer::Options()
                           .before_the_greeting(FakeQmpServer::event("BEFORE_GREETING"))
                           .without_negotiation());
  server.expect("qmp_capabilities", FakeReply::ok().preceded_by(
                                        FakeQmpServer::event("DURING_NEGOTIATION", {{"n", 1}})));
  QmpClient client(io_.get_executor());
  std::vector<std::string> seen;
  client.subscribe([&](const QmpEvent& event) { seen.push_back(event.name); });
  client.async_connect(server.socket_path(), 10s,
                       [&](std::exception_ptr error, const QmpGreeting&) {
                         seen.push_back(error ? describe(error) : "connected");
                       });
  ASSERT_TRUE(run_until([&] { return seen.size() == 3; }));
  EXPECT_THAT(seen, ElementsAre("BEFORE_GREETING", "DURING_NEGOTIATION", "connected"));
}

TEST_F(QmpClientTest, ServerThatNeverGreetsTimesOutWithinTheDeadline) {
  FakeQmpServer server(FakeQmpServer::Options().without_greeting());
  QmpClient client(io_.get_executor());
  const auto start = Clock::now();
  auto result = start_connect(client, server.socket_path(), 300ms);
  ASSERT_TRUE(run_until([&] { return result->has_value(); }));
  const auto elapsed = Clock::now() - start;

  const auto timeout = error_as<QmpTimeout>(**result);
  ASSERT_TRUE(timeout) << describe(**result);
  EXPECT_THAT(timeout->what(), HasSubstr("no QMP greeting from " + server.socket_path().string() +
                                         " within 300 ms"));
  EXPECT_GE(elapsed, 290ms);
  EXPECT_LT(elapsed, 1500ms);
  EXPECT_FALSE(client.connected());
  EXPECT_EQ(server.connections(), 1);
}

TEST_F(QmpClientTest, MissingSocketFailsNamingThePathAndTheOsError) {
  testing::TempDir dir;
  const auto path = dir / "missing.sock";
  QmpClient client(io_.get_executor());
  auto result = start_connect(client, path);
  EXPECT_FALSE(result->has_value()) << "handlers never run inside async_connect";
  ASSERT_TRUE(run_until([&] { return result->has_value(); }));
  const auto error = error_as<QmpDisconnected>(**result);
  ASSERT_TRUE(error) << describe(**result);
  EXPECT_STREQ(
      error->what(),
      ("cannot connect to QMP socket " + path.string() + ": No such file or directory").c_str());
}

TEST_F(QmpClientTest, RefusedConnectionFailsNamingThePathAndTheOsError) {
  testing::TempDir dir;
  const auto path = dir / "stale.sock";
  // A socket file nobody listens on, like the one a killed QEMU leaves behind.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ::close(fd);

  QmpClient client(io_.get_executor());
  auto result = start_connect(client, path);
  ASSERT_TRUE(run_until([&] { return result->has_value(); }));
  const auto error = error_as<QmpDisconnected>(**result);
  ASSERT_TRUE(error) << describe(**result);
  EXPECT_STREQ(error->what(),
               ("cannot connect to QMP socket " + path.string() + ": Connection refused").c_str());
}

TEST_F(QmpClientTest, PathTooLongForASocketFailsThroughTheExecutor) {
  QmpClient client(io_.get_executor());
  auto result = start_connect(client, "/tmp/" + std::string(200, 'x'));
  EXPECT_FALSE(result->has_value());
  poll();
  ASSERT_TRUE(result->has_value());
  EXPECT_TRUE(error_as<QmpDisconnected>(**result)) << describe(**result);
}

TEST_F(QmpClientTest, EveryCommandCarriesAFreshIdAndGetsItsOwnReply) {
  FakeQmpServer server;
  server.expect("query-status", FakeReply::ok({{"status", "running"}}));
  server.expect("query-name", FakeReply::ok({{"name", "dev"}}));
  QmpClient client(io_.get_executor());
  connect(client, server);

  auto status = execute(client, "query-status");
  ASSERT_TRUE(run_until([&] { return status->done(); }));
  auto name = execute(client, "query-name");
  ASSERT_TRUE(run_until([&] { return name->done(); }));

  EXPECT_EQ(status->value, json({{"status", "running"}})) << describe(status->error);
  EXPECT_EQ(name->value, json({{"name", "dev"}})) << describe(name->error);
  const std::vector<json> received = server.received();
  ASSERT_EQ(received.size(), 3u);
  EXPECT_NE(received[0]["id"], received[1]["id"]);
  EXPECT_NE(received[1]["id"], received[2]["id"]);
  EXPECT_NE(received[0]["id"], received[2]["id"]);
}

TEST_F(QmpClientTest, TwoCommandsInFlightAnsweredInReverseOrder) {
  FakeQmpServer server;
  server.expect("query-status", FakeReply::ok({{"status", "running"}}).after(300ms));
  server.expect("query-name", FakeReply::ok({{"name", "dev"}}));
  QmpClient client(io_.get_executor());
  connect(client, server);

  std::vector<std::string> completed;
  json status;
  json name;
  client.async_execute("query-status", nullptr, 10s, [&](std::exception_ptr error, json value) {
    completed.push_back(error ? describe(error) : "query-status");
    status = std::move(value);
  });
  client.async_execute("query-name", nullptr, 10s, [&](std::exception_ptr error, json value) {
    completed.push_back(error ? describe(error) : "query-name");
    name = std::move(value);
  });
  ASSERT_TRUE(run_until([&] { return completed.size() == 2; }));
  EXPECT_THAT(completed, ElementsAre("query-name", "query-status"));
  EXPECT_EQ(status, json({{"status", "running"}}));
  EXPECT_EQ(name, json({{"name", "dev"}}));
}

TEST_F(QmpClientTest, ErrorReplyBecomesQmpErrorWithClassAndDesc) {
  FakeQmpServer server;
  server.expect("cont",
                FakeReply::error("GenericError", "Resetting the Virtual Machine is required"));
  QmpClient client(io_.get_executor());
  connect(client, server);
  auto cont = execute(client, "cont");
  ASSERT_TRUE(run_until([&] { return cont->done(); }));

  const auto error = error_as<QmpError>(cont->error);
  ASSERT_TRUE(error) << describe(cont->error);
  EXPECT_EQ(error->command(), "cont");
  EXPECT_EQ(error->error_class(), "GenericError");
  EXPECT_EQ(error->desc(), "Resetting the Virtual Machine is required");
  EXPECT_STREQ(error->what(),
               "QMP command \"cont\" failed: GenericError: Resetting the Virtual Machine is "
               "required");
  EXPECT_TRUE(client.connected());
}

TEST_F(QmpClientTest, EventBetweenACommandAndItsReplyIsDeliveredFirst) {
  FakeQmpServer server;
  server.expect("stop", FakeReply::ok().preceded_by(FakeQmpServer::event("STOP")));
  QmpClient client(io_.get_executor());
  connect(client, server);
  std::vector<std::string> seen;
  client.subscribe([&](const QmpEvent& event) { seen.push_back("event " + event.name); });
  client.async_execute("stop", nullptr, 10s, [&](std::exception_ptr error, json value) {
    seen.push_back(error ? describe(error) : "reply " + value.dump());
  });
  ASSERT_TRUE(run_until([&] { return seen.size() == 2; }));
  EXPECT_THAT(seen, ElementsAre("event STOP", "reply {}"));
}

TEST_F(QmpClientTest, ServerWritingOneByteAtATimeIsUnderstood) {
  FakeQmpServer server(FakeQmpServer::Options()
                           .before_the_greeting(FakeQmpServer::event("EARLY"))
                           .one_byte_per_write());
  server.expect("query-status", FakeReply::ok({{"status", "paused"}, {"running", false}})
                                    .preceded_by(FakeQmpServer::event("STOP")));
  QmpClient client(io_.get_executor());
  std::vector<std::string> events;
  client.subscribe([&](const QmpEvent& event) { events.push_back(event.name); });
  connect(client, server);
  auto status = execute(client, "query-status");
  ASSERT_TRUE(run_until([&] { return status->done(); }));
  EXPECT_EQ(status->value, json({{"status", "paused"}, {"running", false}}))
      << describe(status->error);
  EXPECT_THAT(events, ElementsAre("EARLY", "STOP"));
  EXPECT_EQ(client.greeting().major, 7);
}

TEST_F(QmpClientTest, MessagesSplitAcrossWritesAreReassembled) {
  FakeQmpServer server;
  QmpClient client(io_.get_executor());
  connect(client, server);
  std::vector<QmpEvent> events;
  client.subscribe([&](const QmpEvent& event) { events.push_back(event); });
  server.write_raw(R"({"event": "RESET", "data": {"gue)");
  server.write_raw(R"(st": true}, "timestamp": {"seconds": 1, "microseconds": 2}})"
                   "\r\n\r\n{\"event\": \"RES");
  server.write_raw("UME\"}\n");
  ASSERT_TRUE(run_until([&] { return events.size() == 2; }));
  EXPECT_EQ(events[0].name, "RESET");
  EXPECT_EQ(events[0].data, json({{"guest", true}}));
  EXPECT_EQ(events[0].microseconds, 2);
  EXPECT_EQ(events[1].name, "RESUME");
}

TEST_F(QmpClientTest, OneMebibyteReplyArrivesWhole) {
  const std::string blob(1 << 20, 'q');
  FakeQmpServer server;
  server.expect("query-qmp-schema", FakeReply::ok({{"blob", blob}}));
  QmpClient client(io_.get_executor());
  connect(client, server);
  auto schema = execute(client, "query-qmp-schema");
  ASSERT_TRUE(run_until([&] { return schema->done(); }));
  ASSERT_FALSE(schema->error) << describe(schema->error);
  EXPECT_EQ(schema->value["blob"].get<std::string>().size(), blob.size());
  EXPECT_TRUE(client.connected());
}

TEST_F(QmpClientTest, LineOverTheCapEndsTheSessionAndFailsThePendingCommand) {
  FakeQmpServer server;
  server.expect("query-qmp-schema",
                FakeReply::raw("{\"return\": \"" + std::string(17 << 20, 'x') + "\"}\n"));
  QmpClient client(io_.get_executor());
  connect(client, server);
  std::vector<std::string> reasons;
  client.on_disconnect([&](const std::string& reason) { reasons.push_back(reason); });
  auto schema = execute(client, "query-qmp-schema", 30s);
  ASSERT_TRUE(run_until([&] { return schema->done() && !reasons.empty(); }, 30s));

  const auto error = error_as<QmpDisconnected>(schema->error);
  ASSERT_TRUE(error) << describe(schema->error);
  EXPECT_THAT(error->what(), HasSubstr("protocol error: a QMP line exceeded 16 MiB"));
  EXPECT_THAT(reasons, ElementsAre("protocol error: a QMP line exceeded 16 MiB"));
  EXPECT_FALSE(client.connected());
}

TEST_F(QmpClientTest, GarbageFromTheServerEndsTheSession) {
  FakeQmpServer server;
  server.expect("query-status", FakeReply::raw("Segmentation fault\n"));
  QmpClient client(io_.get_executor());
  connect(client, server);
  auto status = execute(client, "query-status");
  ASSERT_TRUE(run_until([&] { return status->done(); }));
  const auto error = error_as<QmpDisconnected>(status->error);
  ASSERT_TRUE(error) << describe(status->error);
  EXPECT_THAT(error->what(), HasSubstr("protocol error: malformed JSON: Segmentation fault"));
  EXPECT_FALSE(client.connected());
}

TEST_F(QmpClientTest, EofMidReplyFailsEveryPendingCommandAtOnce) {
  FakeQmpServer server;
  server.expect("query-status", FakeReply::silence());
  server.expect("query-name", FakeReply::raw(R"({"return": {"na)").then_hang_up());
  QmpClient client(io_.get_executor());
  connect(client, server);
  std::vector<std::string> reasons;
  client.on_disconnect([&](const std::string& reason) { reasons.push_back(reason); });

  const auto start = Clock::now();
  auto status = execute(client, "query-status", 60s);
  auto name = execute(client, "query-name", 60s);
  ASSERT_TRUE(run_until([&] { return status->done() && name->done() && !reasons.empty(); }));
  EXPECT_LT(Clock::now() - start, 5s) << "failed by their timeout, not by the EOF";

  for (const auto& outcome : {status, name}) {
    const auto error = error_as<QmpDisconnected>(outcome->error);
    ASSERT_TRUE(error) << describe(outcome->error);
    EXPECT_THAT(error->what(), HasSubstr("QEMU closed the QMP connection"));
  }
  EXPECT_THAT(std::string(error_as<QmpDisconnected>(status->error)->what()),
              HasSubstr("\"query-status\""));
  EXPECT_THAT(reasons, ElementsAre("QEMU closed the QMP connection"));
  EXPECT_FALSE(client.connected());
}

TEST_F(QmpClientTest, ConnectionResetFailsEveryPendingCommandAtOnce) {
  FakeQmpServer server;
  server.expect("query-status", FakeReply::silence());
  server.expect("query-name", FakeReply::reset());
  QmpClient client(io_.get_executor());
  connect(client, server);
  std::vector<std::string> reasons;
  client.on_disconnect([&](const std::string& reason) { reasons.push_back(reason); });

  const auto start = Clock::now();
  auto status = execute(client, "query-status", 60s);
  auto name = execute(client, "query-name", 60s);
  ASSERT_TRUE(run_until([&] { return status->done() && name->done() && !reasons.empty(); }));
  EXPECT_LT(Clock::now() - start, 5s);

  for (const auto& outcome : {status, name}) {
    const auto error = error_as<QmpDisconnected>(outcome->error);
    ASSERT_TRUE(error) << describe(outcome->error);
    EXPECT_THAT(error->what(), HasSubstr("Connection reset by peer"));
  }
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_EQ(reasons[0], "QMP connection to " + server.socket_path().string() +
                            " failed: Connection reset by peer");
}

TEST_F(QmpClientTest, ReplyWithAnUnknownIdIsIgnored) {
  FakeQmpServer server;
  server.expect("query-status",
                FakeReply::ok({{"status", "running"}})
                    .preceded_by({{"return", {{"status", "bogus"}}}, {"id", 987654}})
                    .preceded_by({{"return", {{"status", "bogus"}}}, {"id", "not-ours"}})
                    .preceded_by({{"error", {{"class", "GenericError"}, {"desc", "x"}}},
                                  {"id", {{"a", 1}}}}));
  server.expect("query-name", FakeReply::ok({{"name", "dev"}}));
  QmpClient client(io_.get_executor());
  connect(client, server);
  auto status = execute(client, "query-status");
  ASSERT_TRUE(run_until([&] { return status->done(); }));
  EXPECT_EQ(status->value, json({{"status", "running"}})) << describe(status->error);
  EXPECT_EQ(status->calls, 1);
  EXPECT_TRUE(client.connected());
  auto name = execute(client, "query-name");
  ASSERT_TRUE(run_until([&] { return name->done(); }));
  EXPECT_EQ(name->value, json({{"name", "dev"}})) << describe(name->error);
}

TEST_F(QmpClientTest, ErrorWithoutIdFailsTheOldestPendingCommand) {
  // QEMU's answer to a request it could not parse carries no id.
  FakeQmpServer server;
  server.expect("query-status", FakeReply::silence());
  server.expect("query-name",
                FakeReply::ok({{"name", "dev"}})
                    .preceded_by({{"error",
                                   {{"class", "GenericError"},
                                    {"desc", "JSON parse error, invalid keyword 'x'"}}}}));
  QmpClient client(io_.get_executor());
  connect(client, server);
  auto status = execute(client, "query-status");
  auto name = execute(client, "query-name");
  ASSERT_TRUE(run_until([&] { return status->done() && name->done(); }));

  const auto error = error_as<QmpError>(status->error);
  ASSERT_TRUE(error) << describe(status->error);
  EXPECT_EQ(error->command(), "query-status");
  EXPECT_EQ(error->error_class(), "GenericError");
  EXPECT_EQ(error->desc(), "JSON parse error, invalid keyword 'x'");
  EXPECT_EQ(name->value, json({{"name", "dev"}})) << describe(name->error);
}

TEST_F(QmpClientTest, SuccessWithoutIdIsIgnored) {
  FakeQmpServer server;
  server.expect("query-status",
                FakeReply::ok({{"status", "running"}}).preceded_by({{"return", {}}}));
  QmpClient client(io_.get_executor());
  connect(client, server);
  auto status = execute(client, "query-status");
  ASSERT_TRUE(run_until([&] { return status->done(); }));
  EXPECT_EQ(status->value, json({{"status", "running"}})) << describe(status->error);
}

TEST_F(QmpClientTest, CommandTimeoutLeavesTheSessionUsableAndIgnoresTheLateReply) {
  FakeQmpServer server;
  server.expect("query-status", FakeReply::ok({{"status", "late"}}).after(1000ms));
  server.expect("query-name", FakeReply::ok({{"name", "dev"}}).after(1500ms));
  QmpClient client(io_.get_executor());
  connect(client, server);

  const auto start = Clock::now();
  auto status = execute(client, "query-status", 100ms);
  ASSERT_TRUE(run_until([&] { return status->done(); }));
  EXPECT_LT(Clock::now() - start, 900ms) << "ended by the reply, not by the timeout";
  const auto timeout = error_as<QmpTimeout>(status->error);
  ASSERT_TRUE(timeout) << describe(status->error);
  EXPECT_STREQ(timeout->what(), "QMP command \"query-status\" got no reply within 100 ms");
  EXPECT_TRUE(client.connected());

  // The late reply to query-status arrives while query-name is pending: it must not be taken
  // for query-name's, nor call the first handler again.
  auto name = execute(client, "query-name", 10s);
  ASSERT_TRUE(run_until([&] { return name->done(); }));
  EXPECT_EQ(name->value, json({{"name", "dev"}})) << describe(name->error);
  EXPECT_EQ(status->calls, 1);
  EXPECT_TRUE(client.connected());
}

// One timer serves every command's deadline; whatever was sent or answered before, each
// command still times out at its own deadline, and only then.
TEST_F(QmpClientTest, EachCommandTimesOutAtItsOwnDeadline) {
  FakeQmpServer server;
  server.expect("query-status", FakeReply::ok({{"status", "running"}}));
  server.expect("query-name", FakeReply::silence());
  server.expect("query-kvm", FakeReply::silence());
  QmpClient client(io_.get_executor());
  connect(client, server);

  // Answered well within its 150 ms: its deadline must fail nothing later on.
  auto status = execute(client, "query-status", 150ms);
  ASSERT_TRUE(run_until([&] { return status->done(); }));
  EXPECT_FALSE(status->error) << describe(status->error);

  auto name = execute(client, "query-name", 10s);
  const auto start = Clock::now();
  auto kvm = execute(client, "query-kvm", 300ms);  // a shorter deadline than the one before
  ASSERT_TRUE(run_until([&] { return kvm->done(); }, 5s));
  const auto waited = Clock::now() - start;
  EXPECT_GE(waited, 300ms);
  EXPECT_LT(waited, 1500ms);
  const auto timeout = error_as<QmpTimeout>(kvm->error);
  ASSERT_TRUE(timeout) << describe(kvm->error);
  EXPECT_STREQ(timeout->what(), "QMP command \"query-kvm\" got no reply within 300 ms");

  run_until([] { return false; }, 300ms);
  EXPECT_FALSE(name->done()) << "query-name has 10 s, failed after " << describe(name->error);
  EXPECT_EQ(status->calls, 1);
  EXPECT_TRUE(client.connected());
}

TEST_F(QmpClientTest, ExecuteAfterDisconnectFailsThroughTheExecutor) {
  FakeQmpServer server;
  QmpClient client(io_.get_executor());
  connect(client, server);
  bool disconnected = false;
  client.on_disconnect([&](const std::string&) { disconnected = true; });
  server.hang_up();
  ASSERT_TRUE(run_until([&] { return disconnected; }));

  auto status = execute(client, "query-status", 60s);
  EXPECT_FALSE(status->done()) << "handlers never run inside async_execute";
  const auto start = Clock::now();
  poll();
  ASSERT_TRUE(status->done());
  EXPECT_LT(Clock::now() - start, 1s);
  const auto error = error_as<QmpDisconnected>(status->error);
  ASSERT_TRUE(error) << describe(status->error);
  EXPECT_STREQ(error->what(),
               "QMP command \"query-status\" was not sent: QEMU closed the QMP connection");
}

TEST_F(QmpClientTest, ExecuteBeforeConnectFailsThroughTheExecutor) {
  QmpClient client(io_.get_executor());
  auto status = execute(client, "query-status");
  EXPECT_FALSE(status->done());
  poll();
  ASSERT_TRUE(status->done());
  EXPECT_TRUE(error_as<QmpDisconnected>(status->error)) << describe(status->error);
}

TEST_F(QmpClientTest, DisconnectHandlerIsCalledOnceWithTheReason) {
  FakeQmpServer server;
  QmpClient client(io_.get_executor());
  connect(client, server);
  std::vector<std::string> reasons;
  client.on_disconnect([&](const std::string& reason) { reasons.push_back(reason); });
  server.send_event("SHUTDOWN", {{"guest", false}, {"reason", "host-qmp-quit"}});
  server.hang_up();
  ASSERT_TRUE(run_until([&] { return !reasons.empty(); }));
  client.close();
  io_.restart();
  io_.run_for(50ms);
  EXPECT_THAT(reasons, ElementsAre("QEMU closed the QMP connection"));
}

TEST_F(QmpClientTest, CloseFailsPendingCommandsThroughTheExecutorWithoutDisconnectHandler) {
  FakeQmpServer server;
  server.expect("query-status", FakeReply::silence());
  QmpClient client(io_.get_executor());
  connect(client, server);
  bool disconnect_called = false;
  client.on_disconnect([&](const std::string&) { disconnect_called = true; });
  auto status = execute(client, "query-status", 60s);
  ASSERT_TRUE(server.wait_received(2, 10s));

  client.close();
  EXPECT_FALSE(status->done()) << "handlers never run inside close()";
  EXPECT_FALSE(client.connected());
  client.close();  // idempotent
  poll();
  ASSERT_TRUE(status->done());
  EXPECT_EQ(status->calls, 1);
  EXPECT_TRUE(error_as<QmpDisconnected>(status->error)) << describe(status->error);
  EXPECT_FALSE(disconnect_called);
}

TEST_F(QmpClientTest, CloseDuringConnectFailsTheConnect) {
  FakeQmpServer server(FakeQmpServer::Options().without_greeting());
  QmpClient client(io_.get_executor());
  auto result = start_connect(client, server.socket_path());
  client.close();
  ASSERT_TRUE(run_until([&] { return result->has_value(); }));
  EXPECT_TRUE(error_as<QmpDisconnected>(**result)) << describe(**result);
}

TEST_F(QmpClientTest, DestroyingTheClientFailsPendingCommandsBeforeReturning) {
  FakeQmpServer server;
  server.expect("query-status", FakeReply::silence());
  auto client = std::make_unique<QmpClient>(io_.get_executor());
  connect(*client, server);
  client->subscribe([](const QmpEvent&) { ADD_FAILURE() << "event after destruction"; });
  auto status = execute(*client, "query-status", 60s);
  ASSERT_TRUE(server.wait_received(2, 10s));

  client.reset();
  ASSERT_TRUE(status->done()) << "no handler may run after the client is destroyed";
  EXPECT_TRUE(error_as<QmpDisconnected>(status->error)) << describe(status->error);
  server.send_event("STOP");
  io_.restart();
  io_.run_for(100ms);  // whatever is still queued must not touch the destroyed client
  EXPECT_EQ(status->calls, 1);
}

TEST_F(QmpClientTest, DestroyingTheClientFromItsOwnHandlerIsSafe) {
  FakeQmpServer server;
  server.expect("query-status", FakeReply::ok({{"status", "running"}}));
  server.expect("query-name", FakeReply::silence());
  auto client = std::make_unique<QmpClient>(io_.get_executor());
  connect(*client, server);
  auto name = std::make_shared<Outcome>();
  bool destroyed = false;
  client->async_execute("query-status", nullptr, 10s, [&](std::exception_ptr, json) {
    ASSERT_TRUE(server.wait_received(3, 10s));
    client.reset();
    destroyed = true;
  });
  client->async_execute("query-name", nullptr, 10s, record(name));
  ASSERT_TRUE(run_until([&] { return destroyed; }));
  EXPECT_TRUE(name->done());
  EXPECT_TRUE(error_as<QmpDisconnected>(name->error)) << describe(name->error);
  io_.restart();
  io_.run_for(100ms);
  EXPECT_EQ(name->calls, 1);
}

TEST_F(QmpClientTest, DestroyingAClientWhoseConnectIsPendingCallsTheConnectHandler) {
  FakeQmpServer server(FakeQmpServer::Options().without_greeting());
  auto client = std::make_unique<QmpClient>(io_.get_executor());
  auto result = start_connect(*client, server.socket_path());
  io_.restart();
  io_.run_for(50ms);
  client.reset();
  ASSERT_TRUE(result->has_value());
  EXPECT_TRUE(error_as<QmpDisconnected>(**result)) << describe(**result);
  io_.restart();
  io_.run_for(50ms);
}

TEST_F(QmpClientTest, SubscribersCanUnsubscribeAndSubscribeFromTheirHandlers) {
  FakeQmpServer server;
  QmpClient client(io_.get_executor());
  connect(client, server);
  std::vector<std::string> seen;
  int second = 0;
  int first = 0;
  first = client.subscribe([&](const QmpEvent& event) {
    seen.push_back("first " + event.name);
    client.unsubscribe(first);
    client.unsubscribe(second);  // skipped for this very event already
    client.subscribe([&](const QmpEvent& e) { seen.push_back("third " + e.name); });
  });
  second = client.subscribe([&](const QmpEvent& event) { seen.push_back("second " + event.name); });
  client.subscribe([&](const QmpEvent& event) { seen.push_back("last " + event.name); });

  server.send_event("STOP");
  server.send_event("RESUME");
  ASSERT_TRUE(run_until([&] { return seen.size() == 4; }));
  EXPECT_THAT(seen, ElementsAre("first STOP", "last STOP", "last RESUME", "third RESUME"));
}

TEST_F(QmpClientTest, EventsCarryNameDataAndTimestamp) {
  FakeQmpServer server;
  QmpClient client(io_.get_executor());
  connect(client, server);
  std::optional<QmpEvent> received;
  client.subscribe([&](const QmpEvent& event) { received = event; });
  server.send({{"event", "BLOCK_JOB_COMPLETED"},
               {"data", {{"device", "disk0"}, {"len", 42}}},
               {"timestamp", {{"seconds", 1700000000}, {"microseconds", 5}}}});
  ASSERT_TRUE(run_until([&] { return received.has_value(); }));
  EXPECT_EQ(received->name, "BLOCK_JOB_COMPLETED");
  EXPECT_EQ(received->data, json({{"device", "disk0"}, {"len", 42}}));
  EXPECT_EQ(received->seconds, 1700000000);
  EXPECT_EQ(received->microseconds, 5);
  EXPECT_EQ(received->raw["data"]["len"], 42);
}

TEST_F(QmpClientTest, ArgumentsAreSentOnlyWhenThereAreSome) {
  FakeQmpServer server;
  server.expect("stop");
  server.expect("cont");
  server.expect("set_link", {{"name", "net0"}, {"up", false}}, FakeReply::ok());
  QmpClient client(io_.get_executor());
  connect(client, server);
  auto stop = execute(client, "stop", 10s, nullptr);
  auto cont = execute(client, "cont", 10s, json::object());
  auto set_link = execute(client, "set_link", 10s, {{"name", "net0"}, {"up", false}});
  ASSERT_TRUE(run_until([&] { return stop->done() && cont->done() && set_link->done(); }));
  EXPECT_FALSE(set_link->error) << describe(set_link->error);
  const std::vector<json> received = server.received();
  ASSERT_EQ(received.size(), 4u);
  EXPECT_FALSE(received[1].contains("arguments")) << received[1];
  EXPECT_FALSE(received[2].contains("arguments")) << received[2];
  EXPECT_EQ(received[3]["arguments"], json({{"name", "net0"}, {"up", false}}));
}

TEST_F(QmpClientTest, RefusedCapabilitiesFailTheConnect) {
  FakeQmpServer server(FakeQmpServer::Options().without_negotiation());
  server.expect(
      "qmp_capabilities",
      FakeReply::error("CommandNotFound", "The command qmp_capabilities has not been found"));
  QmpClient client(io_.get_executor());
  auto result = start_connect(client, server.socket_path());
  ASSERT_TRUE(run_until([&] { return result->has_value(); }));
  const auto error = error_as<QmpDisconnected>(**result);
  ASSERT_TRUE(error) << describe(**result);
  EXPECT_THAT(error->what(), HasSubstr("CommandNotFound"));
  EXPECT_FALSE(client.connected());
}

TEST_F(QmpClientTest, ReplyBeforeTheGreetingIsAProtocolError) {
  FakeQmpServer server(FakeQmpServer::Options().without_greeting().before_the_greeting(
      {{"return", json::object()}}));
  QmpClient client(io_.get_executor());
  auto result = start_connect(client, server.socket_path());
  ASSERT_TRUE(run_until([&] { return result->has_value(); }));
  const auto error = error_as<QmpDisconnected>(**result);
  ASSERT_TRUE(error) << describe(**result);
  EXPECT_THAT(error->what(), HasSubstr("protocol error: expected the QMP greeting"));
}

TEST_F(QmpClientTest, SecondConnectOnTheSameClientFails) {
  FakeQmpServer server;
  QmpClient client(io_.get_executor());
  connect(client, server);
  auto again = start_connect(client, server.socket_path());
  ASSERT_TRUE(run_until([&] { return again->has_value(); }));
  EXPECT_TRUE(error_as<QmpDisconnected>(**again)) << describe(**again);
  EXPECT_TRUE(client.connected()) << "the first session goes on";
}

// The fake's own checks must be able to fail, or the tests above prove nothing.
TEST(QmpFakeServerTest, ReportsAnUnexpectedCommand) {
  EXPECT_NONFATAL_FAILURE_ON_ALL_THREADS(
      {
        FakeQmpServer server;
        QmpSession session(server.socket_path(), 10s);
        EXPECT_THROW(session.execute("query-status"), QmpError);
      },
      "FakeQmpServer received an unexpected command");
}

TEST(QmpFakeServerTest, ReportsTheWrongCommand) {
  EXPECT_NONFATAL_FAILURE_ON_ALL_THREADS(
      {
        FakeQmpServer server;
        server.expect("stop");
        QmpSession session(server.socket_path(), 10s);
        EXPECT_THROW(session.execute("cont"), QmpError);
        session.execute("stop");
      },
      "FakeQmpServer expected command \"stop\"");
}

TEST(QmpFakeServerTest, ReportsWrongArguments) {
  EXPECT_NONFATAL_FAILURE_ON_ALL_THREADS(
      {
        FakeQmpServer server;
        server.expect("set_link", {{"name", "net0"}, {"up", true}}, FakeReply::ok());
        QmpSession session(server.socket_path(), 10s);
        session.execute("set_link", {{"name", "net0"}, {"up", false}});
      },
      "FakeQmpServer expected arguments");
}

TEST(QmpFakeServerTest, ReportsExpectedCommandsNeverReceived) {
  EXPECT_NONFATAL_FAILURE_ON_ALL_THREADS(
      {
        FakeQmpServer server;
        server.expect("quit");
      },
      "FakeQmpServer never received the expected commands: quit");
}

}  // namespace
}  // namespace qvm
