#pragma once

#include <string>
#include <string_view>

namespace qvm::profile {

/// `text` as a TOML basic string, quotes included: `"`, `\` and control characters escaped,
/// everything else (UTF-8 included) kept as is. Also how messages quote what the user wrote.
std::string toml_quote(std::string_view text);

/// True if `key` can be written without quotes in TOML (A-Z a-z 0-9 _ -, at least one).
bool is_bare_key(std::string_view key);

/// `prefix.key`, with `key` quoted when it is not bare; just `key` when `prefix` is empty.
std::string join_key(std::string_view prefix, std::string_view key);

}  // namespace qvm::profile
