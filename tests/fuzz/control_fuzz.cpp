// libFuzzer entry point: arbitrary bytes as one request line on a supervisor's control
// socket (parse_control_request). Anyone who can open the socket can send them, and the
// supervisor that runs the VM parses them, so:
//
//  - parsing never throws;
//  - an accepted request has a known op, and a timeout from 0 to kMaxControlTimeout;
//  - the reply either way is JSON the server can send: dumping it never throws.
//
// Any other exception, a crash or a sanitizer report is a finding.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <variant>

#include "finding.hpp"
#include "supervisor/control.hpp"

namespace {

using qvm::fuzz::finding;
using qvm::fuzz::guarded;
using qvm::supervisor::ControlRequest;
using qvm::supervisor::kMaxControlTimeout;

constexpr std::string_view kTarget = "control_fuzz";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  std::variant<ControlRequest, std::string> parsed;
  guarded(kTarget, "parse_control_request", [&] { parsed = qvm::supervisor::parse_control_request(line); });
  if (const auto* request = std::get_if<ControlRequest>(&parsed)) {
    if (request->op != "down" && request->op != "kill" && request->op != "ping") {
      finding(kTarget, "accepted an unknown op", request->op);
    }
    if (request->timeout && (request->timeout->count() < 0 || *request->timeout > kMaxControlTimeout)) {
      finding(kTarget, "accepted a timeout out of range", std::to_string(request->timeout->count()));
    }
    return 0;
  }
  const std::string& refusal = std::get<std::string>(parsed);
  guarded(kTarget, "dumping the refusal", [&] {
    (void)nlohmann::json{{"ok", false}, {"error", "malformed control request: " + refusal}}.dump();
  });
  return 0;
}
