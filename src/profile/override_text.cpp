#include "profile/override_text.hpp"

#include <algorithm>

#include "profile/toml_text.hpp"

namespace qvm::profile {
namespace {

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_key_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '_' || c == '-';
}

// Saturates: any index this large is past the end of every profile array anyway.
std::size_t to_index(std::string_view digits) {
  constexpr std::size_t kLimit = 1'000'000;
  std::size_t index = 0;
  for (char c : digits) index = std::min(kLimit, index * 10 + static_cast<std::size_t>(c - '0'));
  return index;
}

}  // namespace

std::variant<OverrideText, OverrideSyntaxError> read_override(std::string_view text) {
  const std::size_t equals = text.find('=');
  if (equals == std::string_view::npos) {
    return OverrideSyntaxError{1,
                               "expected KEY=VALUE, such as memory=4GiB, got " + toml_quote(text)};
  }
  std::size_t begin = 0;
  std::size_t end = equals;
  while (begin < end && is_blank(text[begin])) ++begin;
  while (end > begin && is_blank(text[end - 1])) --end;
  if (begin == end) {
    return OverrideSyntaxError{1, "expected a key before \"=\", such as memory=4GiB"};
  }
  const std::string_view key = text.substr(begin, end - begin);
  auto malformed = [&](std::size_t at) {
    return OverrideSyntaxError{static_cast<int>(at) + 1,
                               "malformed key " + toml_quote(key) +
                                   "; write a dotted path such as boot.cmdline or disk[0].size"};
  };

  OverrideText result;
  std::size_t i = begin;
  while (true) {
    // A segment: a bare key, then any number of [N].
    const std::size_t segment = i;
    while (i < end && is_key_char(text[i])) ++i;
    if (i == segment) return malformed(i);
    OverrideStep step;
    step.name = std::string(text.substr(segment, i - segment));
    step.column = static_cast<int>(segment) + 1;
    step.numeric = true;
    for (char c : step.name) step.numeric = step.numeric && is_digit(c);
    if (step.numeric) step.index = to_index(step.name);
    result.steps.push_back(std::move(step));
    while (i < end && text[i] == '[') {
      const std::size_t open = i++;
      const std::size_t digits = i;
      while (i < end && is_digit(text[i])) ++i;
      if (i == digits || i >= end || text[i] != ']') return malformed(i);
      OverrideStep index;
      index.kind = OverrideStep::Kind::index;
      index.name = std::string(text.substr(digits, i - digits));
      index.index = to_index(index.name);
      index.column = static_cast<int>(open) + 1;
      result.steps.push_back(std::move(index));
      ++i;  // ']'
    }
    if (i == end) break;
    if (text[i] != '.') return malformed(i);
    ++i;
  }

  std::size_t value_begin = equals + 1;
  std::size_t value_end = text.size();
  while (value_begin < value_end && is_blank(text[value_begin])) ++value_begin;
  while (value_end > value_begin && is_blank(text[value_end - 1])) --value_end;
  result.value = std::string(text.substr(value_begin, value_end - value_begin));
  result.value_column = static_cast<int>(value_begin) + 1;
  return result;
}

}  // namespace qvm::profile
