// The rule for VM and snapshot names, on its own so that the store and its fuzz target can
// use it without the profile parser.
#include <algorithm>
#include <string_view>

#include "qvm/profile.hpp"

namespace qvm {

bool is_valid_name(std::string_view name) {
  // Not std::isalnum: the rule is ASCII whatever the locale.
  const auto alnum = [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  };
  if (name.empty() || name.size() > 63 || !alnum(name.front())) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return alnum(c) || c == '.' || c == '_' || c == '-'; });
}

}  // namespace qvm
