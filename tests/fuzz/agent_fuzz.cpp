// libFuzzer entry point: arbitrary bytes as what the guest agent's channel delivers after
// AgentClient sent guest-sync-delimited, through the pure pieces of the client that see them.
// The guest is untrusted: it can write anything into the virtio-serial channel.
//
//  - agent::SyncReplyScanner finds the reply to our guest-sync-delimited (id kSyncId). Fed in
//    several splits (stream_splits.hpp), it must find it at the same byte each time, and what
//    it found must be a line after a 0xFF delimiter that returns our id.
//  - The bytes after it go through QmpFramer, as the client does; every split must give the
//    same lines.
//  - Each line is a reply: parse_qmp_message may only throw QmpDisconnected; an error reply
//    must have the string class and desc an AgentError is made of; a return value is read as
//    guest-exec-status's, by agent::parse_exec_status, which may only throw AgentDisconnected
//    ("protocol error: ...") and must report what the value says (exit code, signal, output
//    decoded, truncation flags).
//  - agent::base64_decode on every string of a reply: what it accepts must have the size its
//    length implies and must come back unchanged through base64_encode; base64_encode of the
//    raw stream must decode to it.
//
// Any other exception, a crash or a sanitizer report is a finding.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/agent_text.hpp"
#include "finding.hpp"
#include "qvm/agent.hpp"
#include "qvm/qmp.hpp"
#include "stream_splits.hpp"

namespace {

using nlohmann::json;
using qvm::fuzz::finding;
using qvm::fuzz::guarded;

constexpr std::string_view kTarget = "agent_fuzz";
// The id of our guest-sync-delimited; the client draws one at random, the seeds use this one.
constexpr std::int64_t kSyncId = 1234567;

// What the client makes of one split of the stream.
struct Session {
  std::optional<std::size_t> synced_at;  // bytes of the stream up to the end of the sync reply
  std::vector<std::string> lines;        // complete reply lines after it
  bool overlong = false;                 // the framer gave up (a reply over 16 MiB)
};

Session read_session(std::string_view stream, const std::vector<std::size_t>& split) {
  Session session;
  qvm::agent::SyncReplyScanner scanner(kSyncId);
  qvm::QmpFramer framer;
  std::size_t offset = 0;
  for (const std::size_t size : split) {
    std::string_view chunk = stream.substr(offset, size);
    if (!session.synced_at) {
      const std::optional<std::size_t> taken = scanner.scan(chunk);
      if (taken) {
        if (*taken == 0 || *taken > chunk.size()) {
          finding(kTarget, "SyncReplyScanner took bytes it was not given",
                  std::to_string(*taken) + " of " + std::to_string(chunk.size()));
        }
        session.synced_at = offset + *taken;
        chunk.remove_prefix(*taken);
      }
    }
    if (session.synced_at && !session.overlong) {
      try {
        for (std::string& line : framer.feed(chunk)) session.lines.push_back(std::move(line));
      } catch (const qvm::QmpDisconnected&) {
        session.overlong = true;
      }
    }
    offset += size;
  }
  return session;
}

// The line the scanner took must be {"return": kSyncId} after a delimiter.
void check_sync_reply(std::string_view stream, std::size_t end) {
  if (stream[end - 1] != '\n') finding(kTarget, "the sync reply does not end at a newline");
  const std::string_view before = stream.substr(0, end - 1);
  const std::size_t delimiter = before.rfind('\xff');
  if (delimiter == std::string_view::npos) {
    finding(kTarget, "a sync reply was taken without a 0xFF delimiter before it");
  }
  const std::size_t newline = before.rfind('\n');
  const std::size_t start =
      (newline == std::string_view::npos || newline < delimiter ? delimiter : newline) + 1;
  std::string_view line = before.substr(start);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const json reply = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!reply.is_object() || !reply.contains("return") || reply["return"] != kSyncId) {
    finding(kTarget, "the line taken as the sync reply does not return our id", line);
  }
}

std::size_t base64_sextets(std::string_view text) {
  std::size_t count = 0;
  for (const char c : text) {
    if (c != '=' && c != ' ' && c != '\n' && c != '\r' && c != '\t') ++count;
  }
  return count;
}

std::string without_padding(std::string text) {
  while (!text.empty() && text.back() == '=') text.pop_back();
  return text;
}

void check_base64(std::string_view text) {
  const std::optional<std::string> decoded = qvm::agent::base64_decode(text);
  if (!decoded) return;
  const std::size_t sextets = base64_sextets(text);
  if (decoded->size() != sextets * 6 / 8) {
    finding(kTarget, "base64_decode gave the wrong number of bytes", text);
  }
  const std::string encoded = qvm::agent::base64_encode(*decoded);
  if (qvm::agent::base64_decode(encoded) != decoded) {
    finding(kTarget, "base64 of decoded bytes does not decode to them", text);
  }
  // The same characters, but for the unused low bits of the last one.
  std::string significant;
  for (const char c : text) {
    if (c != '=' && c != ' ' && c != '\n' && c != '\r' && c != '\t') significant += c;
  }
  const std::string canonical = without_padding(encoded);
  if (canonical.size() != significant.size() ||
      (!significant.empty() &&
       canonical.compare(0, canonical.size() - 1, significant, 0, significant.size() - 1) != 0)) {
    finding(kTarget, "base64_decode accepted text base64_encode would write differently", text);
  }
}

void check_strings(const json& value, int depth = 0) {
  if (depth > 64) return;  // replies nest at most a few levels; the QMP target covers depth
  if (value.is_string()) {
    check_base64(value.get_ref<const std::string&>());
  } else if (value.is_structured()) {
    for (const json& item : value) check_strings(item, depth + 1);
  }
}

void check_exec_status(const json& status) {
  std::optional<qvm::AgentExecResult> result;
  try {
    result = qvm::agent::parse_exec_status(status);
  } catch (const qvm::AgentDisconnected& error) {
    const std::string_view what = error.what();
    if (what.rfind("protocol error: ", 0) != 0 || !qvm::fuzz::printable_ascii(what)) {
      finding(kTarget, "parse_exec_status threw an unfit AgentDisconnected", what);
    }
    return;
  }
  if (!result) return;
  if (!status.is_object() || status.value("exited", json()) != true) {
    finding(kTarget, "parse_exec_status saw an exit in a status that says none", status.dump());
  }
  // What qemu-ga means by each member: null is the same as absent.
  const auto given = [&](const char* key, json absent) {
    const auto it = status.find(key);
    return it == status.end() || it->is_null() ? absent : *it;
  };
  if (result->signal) {
    if (given("signal", json()) != *result->signal || result->exit_code != 128 + *result->signal) {
      finding(kTarget, "the signal or its exit code is not the status's", status.dump());
    }
  } else if (json(result->exit_code) != given("exitcode", 0)) {
    finding(kTarget, "the exit code is not the status's", status.dump());
  }
  const auto decoded = [&](const char* key) {
    const json data = given(key, "");
    return qvm::agent::base64_decode(data.get<std::string>());
  };
  if (decoded("out-data") != result->out || decoded("err-data") != result->err) {
    finding(kTarget, "the output is not the status's, decoded", status.dump());
  }
  if (json(result->out_truncated) != given("out-truncated", false) ||
      json(result->err_truncated) != given("err-truncated", false)) {
    finding(kTarget, "the truncation flags are not the status's", status.dump());
  }
}

void check_reply(const std::string& line) {
  qvm::QmpMessage message;
  try {
    message = qvm::parse_qmp_message(line);
  } catch (const qvm::QmpDisconnected&) {
    return;  // the client ends the session: AgentDisconnected
  }
  check_strings(message.value);
  if (message.kind == qvm::QmpMessage::Kind::error) {
    // AgentClient::Impl::read_reply makes an AgentError of them with get<std::string>().
    if (!message.value["class"].is_string() || !message.value["desc"].is_string()) {
      finding(kTarget, "an error reply without a string class and desc was accepted", line);
    }
  } else if (message.kind == qvm::QmpMessage::Kind::success) {
    check_exec_status(message.value);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const qvm::fuzz::SplitStream input = qvm::fuzz::read_split_stream(bytes);

  Session first;
  guarded(kTarget, "reading the agent's stream", [&] {
    const auto splits = qvm::fuzz::splits_for(input);
    first = read_session(input.stream, splits.front());
    for (std::size_t i = 1; i < splits.size(); ++i) {
      const Session other = read_session(input.stream, splits[i]);
      if (other.synced_at != first.synced_at) {
        finding(kTarget, "where the sync reply ends depends on how the bytes arrive");
      }
      if (!first.overlong && !other.overlong && other.lines != first.lines) {
        finding(kTarget, "the replies after the sync depend on how the bytes arrive");
      }
    }
    if (first.synced_at) check_sync_reply(input.stream, *first.synced_at);
  });
  guarded(kTarget, "reading the agent's replies", [&] {
    for (const std::string& line : first.lines) check_reply(line);
  });
  guarded(kTarget, "base64", [&] {
    if (qvm::agent::base64_decode(qvm::agent::base64_encode(input.stream)) != input.stream) {
      finding(kTarget, "base64_encode then base64_decode changed the bytes");
    }
  });
  return 0;
}
