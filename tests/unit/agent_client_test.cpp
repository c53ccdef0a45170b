#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>

#include "agent/agent_text.hpp"
#include "qvm/agent.hpp"
#include "support/fake_agent_server.hpp"
#include "support/temp_dir.hpp"

namespace qvm {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using ::testing::ElementsAre;
using testing::FakeAgentReply;
using testing::FakeAgentServer;
using testing::FakeProcess;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

// --- the pure helpers ------------------------------------------------------------------------

TEST(AgentTextTest, Base64MatchesTheRfcVectors) {
  const std::vector<std::pair<std::string, std::string>> vectors = {{"", ""},
                                                                    {"f", "Zg=="},
                                                                    {"fo", "Zm8="},
                                                                    {"foo", "Zm9v"},
                                                                    {"foob", "Zm9vYg=="},
                                                                    {"fooba", "Zm9vYmE="},
                                                                    {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(agent::base64_encode(plain), encoded) << plain;
    EXPECT_EQ(agent::base64_decode(encoded), plain) << encoded;
  }
}

TEST(AgentTextTest, Base64RoundTripsEveryByteValue) {
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes += static_cast<char>(i);
  for (std::size_t length = 0; length <= bytes.size(); length += 37) {
    const std::string plain = bytes.substr(0, length);
    EXPECT_EQ(agent::base64_decode(agent::base64_encode(plain)), plain) << length;
  }
}

TEST(AgentTextTest, Base64DecodeToleratesMissingPaddingAndNewlinesButNothingElse) {
  EXPECT_EQ(agent::base64_decode("Zm9vYg"), "foob");
  EXPECT_EQ(agent::base64_decode("Zm9v\nYmFy\n"), "foobar");
  EXPECT_EQ(agent::base64_decode("Zm9vYmE"), "fooba");
  EXPECT_EQ(agent::base64_decode("Z"), std::nullopt) << "a lone sextet is no byte";
  EXPECT_EQ(agent::base64_decode("Zm9v!"), std::nullopt);
  EXPECT_EQ(agent::base64_decode("Zg==Zg=="), std::nullopt) << "data after padding";
  EXPECT_EQ(agent::base64_decode("Zg="), std::nullopt);
  EXPECT_EQ(agent::base64_decode("===="), std::nullopt);
}

TEST(AgentTextTest, ShQuoteSingleQuotesEveryWord) {
  EXPECT_EQ(agent::sh_quote(""), "''");
  EXPECT_EQ(agent::sh_quote("a b"), "'a b'");
  EXPECT_EQ(agent::sh_quote("it's"), "'it'\\''s'");
  EXPECT_EQ(agent::sh_quote("$HOME `x` \"y\" \\n"), "'$HOME `x` \"y\" \\n'");
}

TEST(AgentTextTest, StreamingScriptRedirectsUnlinksThenExecs) {
  EXPECT_EQ(agent::streaming_script({"echo", "it's"}, "/tmp/o", "/tmp/e"),
            "exec >'/tmp/o' 2>'/tmp/e' </dev/null; rm -f -- '/tmp/o' '/tmp/e'; exec 'echo' "
            "'it'\\''s'");
}

// --- the client against a fake agent ----------------------------------------------------------

TEST(AgentClientTest, ConnectsSynchronisesAndPings) {
  FakeAgentServer server;
  server.expect("guest-ping");
  AgentClient client(server.socket_path(), 5s);
  client.ping(5s);
  EXPECT_THAT(server.commands(), ElementsAre("guest-sync-delimited", "guest-ping"));
  const json sync = server.received().front();
  EXPECT_TRUE(sync["arguments"]["id"].is_number_integer()) << sync.dump();
  EXPECT_EQ(client.socket(), server.socket_path());
}

TEST(AgentClientTest, SyncIdsAreRandom) {
  FakeAgentServer server;
  AgentClient client(server.socket_path(), 5s);
  client.sync(5s);
  client.sync(5s);
  const std::vector<json> received = server.received();
  ASSERT_EQ(received.size(), 3u);
  EXPECT_NE(received[0]["arguments"]["id"], received[1]["arguments"]["id"]);
  EXPECT_NE(received[1]["arguments"]["id"], received[2]["arguments"]["id"]);
}

TEST(AgentClientTest, SyncSkipsWhatEarlierSessionsLeftInTheChannel) {
  // Garbage, a line cut short, replies meant for an earlier client (one of them delimited
  // with its own 0xFF, as an earlier guest-sync-delimited's answer would be), and a
  // half-written line: none of it may be taken for an answer.
  FakeAgentServer server(FakeAgentServer::Options().with_stale(
      std::string("\x01garbage without newline ") + "{\"return\": {\"version\": \"stale\"}}\n" +
      "\xff{\"return\": 12345}\n" + "{\"return\": {\"version\": \"stale too\"}}\n" +
      "not json at all\n" + "{\"error\": {\"class\": \"GenericError\", \"desc\": \"old\"}}\n" +
      "{\"return\": {\"vers"));
  server.expect("guest-info", FakeAgentReply::ok({{"version", "7.2.0"}}));
  AgentClient client(server.socket_path(), 5s);
  EXPECT_EQ(client.info(5s), json({{"version", "7.2.0"}}));
}

TEST(AgentClientTest, StaleRepliesAfterTheDelimiterAreSkippedToo) {
  // The agent's reply to our sync comes after its 0xFF; whatever complete lines precede it
  // after an earlier 0xFF are somebody else's.
  FakeAgentServer server(
      FakeAgentServer::Options().with_stale("\xff{\"return\": 1}\n{\"return\": {}}\n\xff"));
  server.expect("guest-get-time", FakeAgentReply::ok(1700000000000000000));
  AgentClient client(server.socket_path(), 5s);
  EXPECT_EQ(client.execute("guest-get-time", json::object(), 5s), 1700000000000000000);
}

TEST(AgentClientTest, ErrorReplyThrowsAgentErrorAndTheSessionGoesOn) {
  FakeAgentServer server;
  server.expect("guest-info",
                FakeAgentReply::error("GenericError", "Command guest-info has been disabled"));
  server.expect("guest-ping");
  AgentClient client(server.socket_path(), 5s);
  try {
    client.info(5s);
    FAIL() << "expected AgentError";
  } catch (const AgentError& e) {
    EXPECT_EQ(e.command(), "guest-info");
    EXPECT_EQ(e.error_class(), "GenericError");
    EXPECT_EQ(e.desc(), "Command guest-info has been disabled");
    EXPECT_THAT(e.what(), HasSubstr("Command guest-info has been disabled"));
  }
  client.ping(5s);
  EXPECT_EQ(server.count("guest-sync-delimited"), 1) << "an error reply needs no resync";
}

TEST(AgentClientTest, ExecuteSendsArgumentsAndOmitsEmptyOnes) {
  FakeAgentServer server;
  server.expect("guest-set-user-password",
                {{"username", "root"}, {"password", "cXZt"}, {"crypted", false}},
                FakeAgentReply::ok());
  server.expect("guest-get-osinfo", FakeAgentReply::ok({{"id", "debian"}}));
  AgentClient client(server.socket_path(), 5s);
  client.execute("guest-set-user-password",
                 {{"username", "root"}, {"password", "cXZt"}, {"crypted", false}}, 5s);
  EXPECT_EQ(client.execute("guest-get-osinfo"), json({{"id", "debian"}}));
  EXPECT_FALSE(server.received().back().contains("arguments"));
}

TEST(AgentClientTest, AgentThatDoesNotRunThrowsAgentTimeoutWithinTheBound) {
  FakeAgentServer server(FakeAgentServer::Options().not_answering());
  const auto start = Clock::now();
  try {
    AgentClient client(server.socket_path(), 300ms);
    FAIL() << "expected AgentTimeout";
  } catch (const AgentTimeout& e) {
    EXPECT_THAT(e.what(), HasSubstr("did not answer guest-sync-delimited within 300 ms"));
    EXPECT_THAT(e.what(), HasSubstr(server.socket_path().string()));
  }
  const auto elapsed = Clock::now() - start;
  EXPECT_GE(elapsed, 290ms);
  EXPECT_LT(elapsed, 1500ms);
}

TEST(AgentClientTest, CommandTimeoutResynchronisesSoTheLateReplyIsNotTakenForTheNextOne) {
  FakeAgentServer server;
  server.expect("guest-get-time", FakeAgentReply::ok(1).after(400ms));
  server.expect("guest-get-time", FakeAgentReply::ok(2));
  AgentClient client(server.socket_path(), 5s);
  const auto start = Clock::now();
  EXPECT_THROW(client.execute("guest-get-time", json::object(), 100ms), AgentTimeout);
  EXPECT_LT(Clock::now() - start, 1000ms);
  EXPECT_EQ(client.execute("guest-get-time", json::object(), 5s), 2);
  EXPECT_THAT(server.commands(), ElementsAre("guest-sync-delimited", "guest-get-time",
                                             "guest-sync-delimited", "guest-get-time"));
}

TEST(AgentClientTest, MissingSocketThrowsAgentDisconnected) {
  testing::TempDir dir;
  try {
    AgentClient client(dir / "agent.sock", 5s);
    FAIL() << "expected AgentDisconnected";
  } catch (const AgentDisconnected& e) {
    EXPECT_THAT(e.what(), HasSubstr((dir / "agent.sock").string()));
    EXPECT_THAT(e.what(), HasSubstr("No such file or directory"));
  }
}

TEST(AgentClientTest, EofThrowsAgentDisconnectedAndEveryLaterCallToo) {
  FakeAgentServer server;
  server.expect("guest-ping", FakeAgentReply::hang_up());
  AgentClient client(server.socket_path(), 5s);
  const auto start = Clock::now();
  try {
    client.ping(10s);
    FAIL() << "expected AgentDisconnected";
  } catch (const AgentDisconnected& e) {
    EXPECT_THAT(e.what(), HasSubstr("QEMU hung up"));
  }
  EXPECT_LT(Clock::now() - start, 2s) << "EOF ends the wait at once";
  EXPECT_THROW(client.ping(1s), AgentDisconnected);
  EXPECT_EQ(server.connections(), 1) << "no silent reconnect";
}

TEST(AgentClientTest, GarbageAfterSynchronisationIsAProtocolError) {
  FakeAgentServer server;
  server.expect("guest-ping", FakeAgentReply::raw("this is not JSON\n"));
  AgentClient client(server.socket_path(), 5s);
  try {
    client.ping(5s);
    FAIL() << "expected AgentDisconnected";
  } catch (const AgentDisconnected& e) {
    EXPECT_THAT(e.what(), HasSubstr("protocol error"));
    EXPECT_THAT(e.what(), HasSubstr("this is not JSON"));
  }
}

TEST(AgentClientTest, ReplyOverTheCapIsAProtocolError) {
  FakeAgentServer server;
  server.expect("guest-info", FakeAgentReply::raw(std::string((16u << 20) + 2, 'x') + "\n"));
  AgentClient client(server.socket_path(), 5s);
  try {
    client.info(30s);
    FAIL() << "expected AgentDisconnected";
  } catch (const AgentDisconnected& e) {
    EXPECT_THAT(e.what(), HasSubstr("exceeded 16 MiB"));
  }
}

TEST(AgentClientTest, ReplySplitAcrossWritesIsReassembled) {
  FakeAgentServer server;
  server.expect("guest-info", FakeAgentReply::raw("{\"return\": {\"ver")
                                  .then_hang_up());  // never completed: must not be used
  AgentClient client(server.socket_path(), 5s);
  EXPECT_THROW(client.info(5s), AgentDisconnected);

  FakeAgentServer second;
  second.expect(
      "guest-info",
      FakeAgentReply::raw("\"7.2.0\"}}\r\n").preceded_by_raw("{\"return\": {\"version\": "));
  AgentClient other(second.socket_path(), 5s);
  EXPECT_EQ(other.info(5s), json({{"version", "7.2.0"}}));
}

class AgentExecTest : public ::testing::TestWithParam<int> {};

TEST_P(AgentExecTest, ReturnsTheExitCodeAndDecodedOutput) {
  FakeAgentServer server;
  FakeProcess process;
  process.argv = {"sh", "-c", "do things"};
  process.out = "hello\n";
  process.late_out = "world \xc3\xbc\n";
  process.err = "warning\n";
  process.exit_code = GetParam();
  process.running_polls = 2;
  server.expect_process(process);
  AgentClient client(server.socket_path(), 5s);
  const AgentExecResult result = client.exec({"sh", "-c", "do things"});
  EXPECT_EQ(result.exit_code, GetParam());
  EXPECT_EQ(result.signal, std::nullopt);
  EXPECT_EQ(result.out, "hello\nworld \xc3\xbc\n");
  EXPECT_EQ(result.err, "warning\n");
  EXPECT_EQ(server.count("guest-exec-status"), 3) << "polled until it exited";
  const json exec = server.received()[1];
  EXPECT_EQ(exec["arguments"]["capture-output"], true);
  EXPECT_FALSE(exec["arguments"].contains("input-data"));
}

INSTANTIATE_TEST_SUITE_P(AgentExitCodes, AgentExecTest, ::testing::Values(0, 1, 42));

TEST(AgentClientTest, ExecDecodesBinaryOutputAndSendsInput) {
  std::string bytes;
  for (int i = 255; i >= 0; --i) bytes += static_cast<char>(i);
  FakeAgentServer server;
  FakeProcess process;
  process.argv = {"cat"};
  process.out = bytes;
  process.input = std::string("in\0put", 6);
  server.expect_process(process);
  AgentClient client(server.socket_path(), 5s);
  AgentExecOptions options;
  options.input = std::string("in\0put", 6);
  EXPECT_EQ(client.exec({"cat"}, options).out, bytes);
}

TEST(AgentClientTest, ExecDecodesWhatTheRealAgentSent) {
  // Recorded from qemu-ga 7.2 for `echo hello`.
  FakeAgentServer server;
  server.expect("guest-exec", FakeAgentReply::ok({{"pid", 381}}));
  server.expect("guest-exec-status", {{"pid", 381}},
                FakeAgentReply::ok(json::parse(R"({"exitcode": 0, "out-data": "aGVsbG8K",
                                                   "out-truncated": false, "exited": true})")));
  AgentClient client(server.socket_path(), 5s);
  const AgentExecResult result = client.exec({"echo", "hello"});
  EXPECT_EQ(result.out, "hello\n");
  EXPECT_EQ(result.err, "");
  EXPECT_EQ(result.exit_code, 0);
}

TEST(AgentClientTest, ExecReportsAKillingSignal) {
  FakeAgentServer server;
  FakeProcess process;
  process.argv = {"sleep", "100"};
  process.signal = 9;
  server.expect_process(process);
  AgentClient client(server.socket_path(), 5s);
  const AgentExecResult result = client.exec({"sleep", "100"});
  EXPECT_EQ(result.signal, 9);
  EXPECT_EQ(result.exit_code, 137);
}

TEST(AgentClientTest, ExecOfAMissingProgramThrowsAgentError) {
  FakeAgentServer server;
  server.expect("guest-exec",
                FakeAgentReply::error("GenericError",
                                      "Failed to execute child process \"nope\" (No such file or "
                                      "directory)"));
  AgentClient client(server.socket_path(), 5s);
  try {
    client.exec({"nope"});
    FAIL() << "expected AgentError";
  } catch (const AgentError& e) {
    EXPECT_THAT(e.desc(), HasSubstr("No such file or directory"));
  }
  EXPECT_THROW(client.exec({}), UsageError);
}

TEST(AgentClientTest, ExecStillRunningAtTheDeadlineThrowsAgentTimeout) {
  FakeAgentServer server;
  FakeProcess process;
  process.argv = {"sleep", "100"};
  process.until_released = true;
  server.expect_process(process);
  AgentClient client(server.socket_path(), 5s);
  AgentExecOptions options;
  options.timeout = 300ms;
  const auto start = Clock::now();
  try {
    client.exec({"sleep", "100"}, options);
    FAIL() << "expected AgentTimeout";
  } catch (const AgentTimeout& e) {
    EXPECT_THAT(e.what(), HasSubstr("sleep 100"));
    EXPECT_THAT(e.what(), HasSubstr("did not finish within 300 ms"));
  }
  EXPECT_LT(Clock::now() - start, 1500ms);
  EXPECT_GE(server.count("guest-exec-status"), 2) << "it was polled meanwhile";
}

TEST(AgentClientTest, StreamingExecDeliversChunksWhileTheCommandRuns) {
  FakeAgentServer server;
  FakeProcess process;
  process.argv = {"/bin/sh", "-c", "echo a; sleep 2; echo b"};
  process.out = "a\n";
  process.late_out = "b\n";
  process.late_err = "it's done\n";
  process.exit_code = 3;
  process.until_released = true;  // runs until the client has shown "a"
  server.expect_process(process);
  AgentClient client(server.socket_path(), 5s);

  std::string out, err;
  std::vector<std::string> chunks;
  const int code = client.exec_streaming(
      {"/bin/sh", "-c", "echo a; sleep 2; echo b"},
      [&](std::string_view chunk) {
        out += chunk;
        chunks.emplace_back(chunk);
        if (out == "a\n") server.release();
      },
      [&](std::string_view chunk) { err += chunk; }, 10s);
  EXPECT_EQ(code, 3);
  EXPECT_EQ(out, "a\nb\n");
  EXPECT_EQ(err, "it's done\n");
  EXPECT_THAT(chunks, ElementsAre("a\n", "b\n")) << "\"a\" came on its own, before the end";
  EXPECT_THAT(server.files(), ::testing::IsEmpty()) << "the temporary files are gone";
  EXPECT_EQ(server.open_handles(), 0u) << "every guest-file handle was closed";
}

TEST(AgentClientTest, StreamingExecQuotesEveryWordForTheShell) {
  const std::vector<std::string> argv = {"printf",         "%s|%s\\n",  "it's",
                                         "a  b; rm -rf /", "$(reboot)", ""};
  FakeAgentServer server;
  FakeProcess process;
  process.argv = argv;  // the fake unquotes the script and compares
  process.out = "ok";
  server.expect_process(process);
  AgentClient client(server.socket_path(), 5s);
  std::string out;
  EXPECT_EQ(client.exec_streaming(
                argv, [&](std::string_view c) { out += c; }, nullptr, 10s),
            0);
  EXPECT_EQ(out, "ok");
  const json exec = server.received().at(3);  // after sync and the two guest-file-open
  EXPECT_EQ(exec["arguments"]["path"], "/bin/sh");
  EXPECT_EQ(exec["arguments"].value("capture-output", false), false);
}

TEST(AgentClientTest, StreamingExecReportsSignalsAndTimeouts) {
  FakeAgentServer server;
  FakeProcess killed;
  killed.argv = {"sleep", "1"};
  killed.signal = 15;
  server.expect_process(killed);
  FakeProcess stuck;
  stuck.argv = {"sleep", "100"};
  stuck.until_released = true;
  server.expect_process(stuck);
  AgentClient client(server.socket_path(), 5s);
  EXPECT_EQ(client.exec_streaming({"sleep", "1"}, nullptr, nullptr, 10s), 143);

  const auto start = Clock::now();
  EXPECT_THROW(client.exec_streaming({"sleep", "100"}, nullptr, nullptr, 300ms), AgentTimeout);
  EXPECT_LT(Clock::now() - start, 2s);
  EXPECT_EQ(server.open_handles(), 0u) << "handles are closed after a timeout too";
}

TEST(AgentClientTest, StreamingExecThatCannotStartRemovesItsFiles) {
  FakeAgentServer server;
  server.expect("guest-exec", FakeAgentReply::error("GenericError", "Failed to execute"));
  server.expect("guest-exec", FakeAgentReply::ok({{"pid", 77}}));  // the cleanup's rm
  AgentClient client(server.socket_path(), 5s);
  EXPECT_THROW(client.exec_streaming({"true"}, nullptr, nullptr, 10s), AgentError);
  EXPECT_EQ(server.open_handles(), 0u);
  const json rm = server.received().back();
  EXPECT_EQ(rm["arguments"]["path"], "rm");
  ASSERT_EQ(rm["arguments"]["arg"].size(), 4u);
  EXPECT_THAT(rm["arguments"]["arg"][2].get<std::string>(), HasSubstr("/tmp/qvm-exec-"));
}

TEST(AgentClientTest, ShutdownWithoutAReplyCountsAsAccepted) {
  FakeAgentServer server;
  server.expect("guest-shutdown", {{"mode", "reboot"}}, FakeAgentReply::silence());
  server.expect("guest-ping");
  AgentClient client(server.socket_path(), 5s);
  const auto start = Clock::now();
  client.shutdown(AgentShutdownMode::reboot, 300ms);
  const auto elapsed = Clock::now() - start;
  EXPECT_GE(elapsed, 290ms);
  EXPECT_LT(elapsed, 1500ms);
  client.ping(5s);
  EXPECT_EQ(server.count("guest-sync-delimited"), 2) << "resynchronised after the silence";
}

TEST(AgentClientTest, ShutdownFollowedByHangUpCountsAsAccepted) {
  FakeAgentServer server;
  server.expect("guest-shutdown", {{"mode", "powerdown"}}, FakeAgentReply::hang_up().after(50ms));
  AgentClient client(server.socket_path(), 5s);
  const auto start = Clock::now();
  client.shutdown(AgentShutdownMode::powerdown, 10s);
  EXPECT_LT(Clock::now() - start, 2s) << "EOF ends the wait at once";
  EXPECT_THROW(client.ping(1s), AgentDisconnected);
}

TEST(AgentClientTest, ShutdownRefusedThrowsAgentError) {
  FakeAgentServer server;
  server.expect("guest-shutdown", {{"mode", "halt"}},
                FakeAgentReply::error("GenericError", "child process has failed to shutdown"));
  AgentClient client(server.socket_path(), 5s);
  try {
    client.shutdown(AgentShutdownMode::halt, 5s);
    FAIL() << "expected AgentError";
  } catch (const AgentError& e) {
    EXPECT_EQ(e.command(), "guest-shutdown");
    EXPECT_EQ(e.desc(), "child process has failed to shutdown");
  }
}

TEST(AgentClientTest, ShutdownThatCannotBeAskedIsNotAccepted) {
  FakeAgentServer server;
  server.expect("guest-ping", FakeAgentReply::ok().after(10s));  // the agent hangs
  AgentClient client(server.socket_path(), 5s);
  EXPECT_THROW(client.ping(100ms), AgentTimeout);
  // The resync cannot get through the hung agent: shutdown was never sent.
  EXPECT_THROW(client.shutdown(AgentShutdownMode::powerdown, 200ms), AgentTimeout);
  EXPECT_EQ(server.count("guest-shutdown"), 0);
  server.hang_up();
}

TEST(AgentClientTest, ModeNames) {
  EXPECT_EQ(to_string(AgentShutdownMode::powerdown), "powerdown");
  EXPECT_EQ(to_string(AgentShutdownMode::reboot), "reboot");
  EXPECT_EQ(to_string(AgentShutdownMode::halt), "halt");
}

}  // namespace
}  // namespace qvm
