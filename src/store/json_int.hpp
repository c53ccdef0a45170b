#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

namespace qvm::store {

/// `value` as an Int if it is a JSON integer that fits, else nullopt. nlohmann's get<Int>()
/// wraps integers that do not fit and is undefined behaviour for floats that do not; qvm
/// writes integers in its state files, so anything else there is a corrupt file.
template <typename Int>
std::optional<Int> json_int(const nlohmann::json& value) {
  if (value.is_number_unsigned()) {
    const auto number = value.get<std::uint64_t>();
    if (std::in_range<Int>(number)) return static_cast<Int>(number);
  } else if (value.is_number_integer()) {
    const auto number = value.get<std::int64_t>();
    if (std::in_range<Int>(number)) return static_cast<Int>(number);
  }
  return std::nullopt;
}

}  // namespace qvm::store
