#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qvm/agent.hpp"

namespace qvm::agent {

/// Standard base64 (RFC 4648, with padding), as glib's g_base64_encode writes it.
std::string base64_encode(std::string_view bytes);

/// Decodes standard base64; padding is optional and ASCII whitespace is ignored (glib accepts
/// both). nullopt on any other character or a impossible length. Pure; fuzzable.
std::optional<std::string> base64_decode(std::string_view text);

/// `word` as one word for a POSIX shell: single-quoted, with each ' written as '\''.
std::string sh_quote(std::string_view word);

/// The /bin/sh -c script exec_streaming runs: redirects stdout/stderr into `out_path` /
/// `err_path` (which must exist, so that the reader's handles see the same files), unlinks
/// both, then execs argv (every word quoted).
std::string streaming_script(const std::vector<std::string>& argv, std::string_view out_path,
                             std::string_view err_path);

/// Finds the agent's reply to one guest-sync-delimited request in the bytes it sends: the first
/// line after a 0xFF delimiter that is {"return": id}. Whatever comes before is skipped (stale
/// replies, the agent's complaint about our own 0xFF, garbage, partial lines). Pure; fuzzed.
class SyncReplyScanner {
 public:
  explicit SyncReplyScanner(std::int64_t id) : id_(id) {}

  /// Scans the next bytes received. Once the reply is complete, returns how many of `bytes`
  /// it took, up to and including its newline (the rest are the session's first replies);
  /// nullopt until then. Must not be called again after it found the reply.
  std::optional<std::size_t> scan(std::string_view bytes);

 private:
  std::int64_t id_;
  std::string partial_;
  bool delimited_ = false;
};

/// Reads guest-exec-status's "return" value: nullopt while the command runs, else its exit
/// status and its output decoded. Throws AgentDisconnected ("protocol error: ...") if the
/// value is not what qemu-ga sends. Pure; fuzzed.
std::optional<AgentExecResult> parse_exec_status(const nlohmann::json& status);

}  // namespace qvm::agent
