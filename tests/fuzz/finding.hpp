#pragma once

// How a fuzz target reports a broken invariant: one line on stderr that scripts/fuzz.sh shows
// ("<target>: <what>: <detail>"), then abort(), so libFuzzer saves the input as a crash.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <typeinfo>

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

/// Runs `body`; an exception that escapes it is a finding: the code under test throws only
/// the types the caller catches inside `body`.
template <typename Body>
void guarded(std::string_view target, const char* what, Body&& body) {
  try {
    body();
  } catch (const std::exception& error) {
    finding(target, std::string(what) + " threw " + typeid(error).name(), error.what());
  }
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
