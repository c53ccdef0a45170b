#include <gtest/gtest.h>

#include "supervisor/control.hpp"

namespace qvm::supervisor {
namespace {

using namespace std::chrono_literals;

ControlRequest accepted(std::string_view line) {
  auto parsed = parse_control_request(line);
  if (const auto* refused = std::get_if<std::string>(&parsed)) {
    ADD_FAILURE() << line << " was refused: " << *refused;
    return {};
  }
  return std::get<ControlRequest>(parsed);
}

std::string refused(std::string_view line) {
  auto parsed = parse_control_request(line);
  if (std::holds_alternative<ControlRequest>(parsed)) {
    ADD_FAILURE() << line << " was accepted";
    return {};
  }
  return std::get<std::string>(parsed);
}

TEST(ControlRequestTest, WhatQvmSendsIsUnderstood) {
  EXPECT_EQ(accepted(R"({"op": "down", "timeout": 60, "force": false})"),
            (ControlRequest{"down", 60s, false}));
  EXPECT_EQ(accepted(R"({"op": "down", "force": true})"), (ControlRequest{"down", std::nullopt, true}));
  EXPECT_EQ(accepted(R"({"op": "kill"})"), (ControlRequest{"kill", std::nullopt, false}));
  EXPECT_EQ(accepted("{\"op\": \"ping\"}\n"), (ControlRequest{"ping", std::nullopt, false}));
  EXPECT_EQ(accepted(R"({"op": "down", "timeout": 0})").timeout, 0s);
}

// The supervisor runs the VM: a request from anyone who can open the socket must never
// throw inside it or reach an out-of-range conversion; it gets {"ok": false} instead.
TEST(ControlRequestTest, MalformedRequestsAreRefusedWithTheReason) {
  EXPECT_EQ(refused("not json"), "not a JSON object");
  EXPECT_EQ(refused("[1, 2]"), "not a JSON object");
  EXPECT_EQ(refused(R"({"timeout": 5})"), "no \"op\"");
  EXPECT_EQ(refused(R"({"op": 7})"), "no \"op\"");
  EXPECT_EQ(refused(R"({"op": "reboot"})"), "unknown operation \"reboot\"");
  for (const char* timeout : {R"("60")", "-1", "2.5", "1e300", "null", "true"}) {
    EXPECT_EQ(refused(std::string(R"({"op": "down", "timeout": )") + timeout + "}"),
              "\"timeout\" is not a whole number of seconds, 0 or more")
        << timeout;
  }
  EXPECT_EQ(refused(R"({"op": "down", "force": "yes"})"), "\"force\" is not true or false");
}

TEST(ControlRequestTest, AnEnormousTimeoutIsTheLongestWait) {
  EXPECT_EQ(accepted(R"({"op": "down", "timeout": 18446744073709551615})").timeout, kMaxControlTimeout);
  EXPECT_EQ(accepted(R"({"op": "down", "timeout": 9223372036854775807})").timeout, kMaxControlTimeout);
  EXPECT_EQ(accepted(R"({"op": "down", "timeout": 1000000000})").timeout, kMaxControlTimeout);
}

}  // namespace
}  // namespace qvm::supervisor
