#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

}  // namespace qvm::agent
