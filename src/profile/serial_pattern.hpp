#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace qvm::profile {

/// Why `pattern` is not a valid ECMAScript regular expression (std::regex's own words), or
/// nullopt if it compiles.
std::optional<std::string> regex_problem(std::string_view pattern);

}  // namespace qvm::profile
