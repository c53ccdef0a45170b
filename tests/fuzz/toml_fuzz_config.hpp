#pragma once

// toml++'s configuration header in the fuzz build (TOML_CONFIG_HEADER): its internal
// assertions stay live, as assert() does in the rest of the fuzz build, except the
// preconditions below, which toml++ 3.3.0's own parser breaks on malformed input. qvm
// compiles toml++ with its assertions off (src/profile/profile_parser.cpp), so there these
// checks are no-ops and the parser goes on to report a parse error (qvm validate prints it
// with a caret); the fuzzer should see the same, not stop on known bugs that are not qvm's.
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace qvm::fuzz {

inline void toml_assertion_failed(const char* expression, const char* file, int line) {
  static constexpr const char* kBrokenByTomlParser[] = {
      // parse_key() after "[=a]" or "[[[a]]]" (fixed upstream: marzer/tomlplusplus PR #301)
      "is_bare_key_character(*cp) || is_string_delimiter(*cp)",
      // parse_value() on "x = [}" or "x = { a = [} }": a value expected, a brace found
      "!is_value_terminator(*cp)",
  };
  for (const char* known : kBrokenByTomlParser) {
    if (std::strcmp(expression, known) == 0) return;
  }
  std::fprintf(stderr, "%s:%d: toml++ assertion failed: %s\n", file, line, expression);
  std::abort();
}

}  // namespace qvm::fuzz

#define TOML_ASSERT(expr) \
  ((expr) ? static_cast<void>(0) : ::qvm::fuzz::toml_assertion_failed(#expr, __FILE__, __LINE__))
