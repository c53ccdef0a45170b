// GCC 12 reports a false -Wmaybe-uninitialized inside std::regex's std::function members at
// -O2 with sanitizers; the pragma has to precede the standard headers to take effect.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "profile/serial_pattern.hpp"

#include <regex>

namespace qvm::profile {
namespace {

// libstdc++ 12's std::regex compiles by recursive descent and reads repetition counts and
// back-reference numbers into a long without an overflow check: groups nested some ten
// thousand deep overflow the stack, and a count of 20 digits is undefined behaviour. Such
// patterns are refused before std::regex sees them; no serial pattern needs either.
constexpr int kMaxGroupDepth = 256;
constexpr std::size_t kMaxNumberDigits = 9;

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

std::optional<std::string> beyond_regex_limits(std::string_view pattern) {
  const std::string too_large = "Repetition count or back-reference number of more than " +
                                std::to_string(kMaxNumberDigits) + " digits in regular expression";
  int depth = 0;
  bool in_bracket = false;  // [...]: parentheses and braces are plain characters there
  bool in_brace = false;    // {m,n}
  std::size_t digits = 0;   // of the number being read in braces
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\') {
      // The escaped character, or the digits of a back-reference.
      std::size_t end = i + 1;
      while (end < pattern.size() && is_digit(pattern[end])) ++end;
      if (end - (i + 1) > kMaxNumberDigits) return too_large;
      i = (end > i + 1 ? end : i + 2) - 1;
    } else if (in_bracket) {
      in_bracket = c != ']';
    } else if (in_brace) {
      digits = is_digit(c) ? digits + 1 : 0;
      if (digits > kMaxNumberDigits) return too_large;
      in_brace = c != '}';
    } else if (c == '[') {
      in_bracket = true;
    } else if (c == '{') {
      in_brace = true;
      digits = 0;
    } else if (c == '(') {
      if (++depth > kMaxGroupDepth) {
        return "Groups nested more than " + std::to_string(kMaxGroupDepth) +
               " deep in regular expression";
      }
    } else if (c == ')' && depth > 0) {
      --depth;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> regex_problem(std::string_view pattern) {
  if (auto problem = beyond_regex_limits(pattern)) return problem;
  try {
    const std::regex compiled(pattern.begin(), pattern.end(), std::regex::ECMAScript);
    static_cast<void>(compiled);
    return std::nullopt;
  } catch (const std::regex_error& error) {
    return std::string(error.what());
  }
}

}  // namespace qvm::profile

#pragma GCC diagnostic pop
