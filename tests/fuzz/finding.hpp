#pragma once

// How a fuzz target reports a broken invariant: one line on stderr that scripts/fuzz.sh shows
// ("<target>: <what>: <detail>"), then abort(), so libFuzzer saves the input as a crash.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace qvm::fuzz {

[[noreturn]] inline void finding(std::string_view target, std::string_view what,
                                 std::string_view detail = {}) {
  std::string line(target);
  line += ": ";
  line += what;
  if (!detail.empty()) {
    line += ": ";
    line += detail.substr(0, 2000);
  }
  std::fprintf(stderr, "%s\n", line.c_str());
  std::abort();
}

/// True if `text` is printable ASCII only: what qvm puts in error messages it builds from
/// untrusted bytes (they go to a terminal, a log, a JSON string).
inline bool printable_ascii(std::string_view text) {
  for (const char c : text) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace qvm::fuzz
