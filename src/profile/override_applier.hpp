#pragma once

#include <cstddef>
#include <string_view>

#include "profile/diagnostics.hpp"
#include "profile/toml.hpp"

namespace qvm::profile {

/// Applies `--set KEY=VALUE` override number `index` (its text) to the parsed `document`,
/// creating the tables and array entries it names; a malformed override or a path through
/// a value of the wrong kind is reported to `diagnostics` and leaves `document` unchanged.
void apply_override(toml::table& document, Diagnostics& diagnostics, std::size_t index,
                    std::string_view text);

}  // namespace qvm::profile
