#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace qvm::qmp {

/// A short, printable excerpt of `line` for error messages: at most ~80 characters, control
/// and non-ASCII bytes written as \xNN (so the result is valid UTF-8), "..." when cut.
std::string excerpt(std::string_view line);

/// "250 ms": how timeouts are written in QMP error messages.
std::string format_duration(std::chrono::steady_clock::duration duration);

}  // namespace qvm::qmp
