#include "supervisor/readiness.hpp"

#include <regex>
#include <thread>
#include <utility>

#include "qvm/agent.hpp"

namespace qvm::supervisor {

using Clock = std::chrono::steady_clock;

Readiness::Readiness(boost::asio::io_context& io, ReadyConditions conditions, ReadyCallbacks callbacks)
    : conditions_(std::move(conditions)), callbacks_(std::move(callbacks)), timer_(io), agent_work_(io) {
  if (conditions_.serial) {
    waiting_serial_ = true;
    what_ = "the serial console to match /" + *conditions_.serial + "/";
    serial_watch_ = std::make_unique<SerialWatch>(
        io, conditions_.serial_log, conditions_.serial_offset, std::regex(*conditions_.serial, std::regex::ECMAScript),
        [this](const std::string& matched) {
          waiting_serial_ = false;
          callbacks_.serial_matched(matched);
          check_done("serial console matched \"" + matched + "\"");
        });
  }
  if (conditions_.agent) {
    waiting_agent_ = true;
    what_ += std::string(what_.empty() ? "" : " and ") + "the guest agent to answer";
    const auto deadline = Clock::now() + conditions_.timeout;
    agent_work_.run(
        [socket = conditions_.agent_socket, deadline](const std::atomic<bool>& cancelled) {
          // The channel accepts connections long before the guest's agent listens.
          while (!cancelled && Clock::now() < deadline) {
            try {
              AgentClient agent(socket, std::chrono::seconds(2));
              agent.ping(std::chrono::seconds(2));
              return;
            } catch (const Error&) {
              std::this_thread::sleep_for(std::chrono::milliseconds(200));
            }
          }
          throw Error("the guest agent did not answer");
        },
        [this](bool answered) {
          if (!answered || over_) return;
          waiting_agent_ = false;
          callbacks_.agent_answered();
          check_done("the guest agent answered");
        });
  }
  timer_.expires_after(conditions_.timeout);
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || over_) return;
    over_ = true;
    serial_watch_.reset();
    agent_work_.cancel();
    callbacks_.timed_out(waiting_serial_ ? "the serial console never matched /" + *conditions_.serial + "/"
                                         : "the guest agent never answered");
  });
}

Readiness::~Readiness() {
  over_ = true;
  agent_work_.cancel();
  timer_.cancel();
}

void Readiness::check_done(const std::string& how) {
  if (over_ || waiting_serial_ || waiting_agent_) return;
  over_ = true;
  timer_.cancel();
  callbacks_.ready(how);
}

}  // namespace qvm::supervisor
