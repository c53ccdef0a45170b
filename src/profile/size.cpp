#include "profile/size.hpp"

#include <array>
#include <limits>
#include <optional>
#include <utility>

#include "qvm/profile.hpp"

namespace qvm {
namespace profile {
namespace {

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::optional<std::uint64_t> unit_multiplier(std::string_view unit) {
  static constexpr std::array<std::pair<std::string_view, std::uint64_t>, 8> kUnits{{
      {"k", kKiB},
      {"kib", kKiB},
      {"m", kMiB},
      {"mib", kMiB},
      {"g", kGiB},
      {"gib", kGiB},
      {"t", kTiB},
      {"tib", kTiB},
  }};
  if (unit.empty()) return kMiB;
  for (const auto& [name, multiplier] : kUnits) {
    if (equals_ignoring_case(unit, name)) return multiplier;
  }
  return std::nullopt;
}

}  // namespace

SizeReading read_size(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return {};
  std::string_view unit = text.substr(digits);
  // One space between number and unit, never a space with nothing after it.
  if (!unit.empty() && unit.front() == ' ') {
    unit.remove_prefix(1);
    if (unit.empty()) return {};
  }
  const std::optional<std::uint64_t> multiplier = unit_multiplier(unit);
  if (!multiplier) return {};

  // Digits are checked first so "99999999999999999999x" is malformed, not an overflow.
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t number = 0;
  bool overflow = false;
  for (std::size_t i = 0; i < digits; ++i) {
    const auto digit = static_cast<std::uint64_t>(text[i] - '0');
    if (number > (kMax - digit) / 10) {
      overflow = true;
      break;
    }
    number = number * 10 + digit;
  }
  if (overflow || number > kMax / *multiplier) return {SizeReading::Status::overflow, 0};
  return {SizeReading::Status::ok, number * *multiplier};
}

std::string format_size(std::uint64_t bytes) {
  static constexpr std::array<std::pair<std::uint64_t, std::string_view>, 4> kUnits{{
      {kTiB, "TiB"},
      {kGiB, "GiB"},
      {kMiB, "MiB"},
      {kKiB, "KiB"},
  }};
  if (bytes == 0) return "0MiB";
  for (const auto& [multiplier, name] : kUnits) {
    if (bytes % multiplier == 0) return std::to_string(bytes / multiplier) + std::string(name);
  }
  return std::to_string(bytes / kKiB + 1) + "KiB";
}

}  // namespace profile

std::optional<std::uint64_t> parse_size(std::string_view text) {
  const profile::SizeReading reading = profile::read_size(text);
  if (reading.status != profile::SizeReading::Status::ok) return std::nullopt;
  return reading.bytes;
}

}  // namespace qvm
