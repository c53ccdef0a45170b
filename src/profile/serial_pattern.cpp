// GCC 12 reports a false -Wmaybe-uninitialized inside std::regex's std::function members at
// -O2 with sanitizers; the pragma has to precede the standard headers to take effect.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "profile/serial_pattern.hpp"

#include <regex>

namespace qvm::profile {

std::optional<std::string> regex_problem(std::string_view pattern) {
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
