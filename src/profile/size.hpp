#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace qvm::profile {

inline constexpr std::uint64_t kKiB = 1024;
inline constexpr std::uint64_t kMiB = kKiB * 1024;
inline constexpr std::uint64_t kGiB = kMiB * 1024;
inline constexpr std::uint64_t kTiB = kGiB * 1024;

/// The outcome of reading a size: the validator words "not a size" and "too large" apart.
struct SizeReading {
  enum class Status { ok, malformed, overflow };
  Status status = Status::malformed;
  std::uint64_t bytes = 0;  // valid when status == ok
};

/// Reads "<digits>[ ][K|KiB|M|MiB|G|GiB|T|TiB]" (case-insensitive; no unit means MiB).
SizeReading read_size(std::string_view text);

/// The shortest exact spelling of `bytes` in the largest binary unit that divides it
/// ("2GiB", "1536MiB", "4KiB"); sizes that are not whole KiB are rounded up to KiB.
std::string format_size(std::uint64_t bytes);

}  // namespace qvm::profile
