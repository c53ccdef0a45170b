#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

namespace qvm::profile {

/// Levenshtein distance between `a` and `b` (insertions, deletions, substitutions; bytes).
std::size_t edit_distance(std::string_view a, std::string_view b);

/// The candidate `word` was probably meant to be: one that differs only in letter case, else
/// the first of those closest to it within an edit distance of 2. nullopt if none is close.
std::optional<std::string_view> did_you_mean(std::string_view word,
                                             std::span<const std::string_view> candidates);

}  // namespace qvm::profile
