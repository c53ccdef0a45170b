#include "profile/size.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>

#include "qvm/profile.hpp"

namespace qvm {
namespace {

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t MiB = KiB * 1024;
constexpr std::uint64_t GiB = MiB * 1024;
constexpr std::uint64_t TiB = GiB * 1024;

TEST(SizeTest, EveryUnitIsBinary) {
  EXPECT_EQ(3 * KiB, parse_size("3K"));
  EXPECT_EQ(3 * KiB, parse_size("3KiB"));
  EXPECT_EQ(3 * MiB, parse_size("3M"));
  EXPECT_EQ(3 * MiB, parse_size("3MiB"));
  EXPECT_EQ(3 * GiB, parse_size("3G"));
  EXPECT_EQ(3 * GiB, parse_size("3GiB"));
  EXPECT_EQ(3 * TiB, parse_size("3T"));
  EXPECT_EQ(3 * TiB, parse_size("3TiB"));
}

TEST(SizeTest, UnitsIgnoreCase) {
  EXPECT_EQ(2 * GiB, parse_size("2gib"));
  EXPECT_EQ(2 * GiB, parse_size("2g"));
  EXPECT_EQ(2 * GiB, parse_size("2GIB"));
  EXPECT_EQ(5 * KiB, parse_size("5k"));
  EXPECT_EQ(5 * TiB, parse_size("5tIb"));
}

TEST(SizeTest, NoUnitMeansMiB) {
  EXPECT_EQ(512 * MiB, parse_size("512"));
  EXPECT_EQ(0u, parse_size("0"));
  EXPECT_EQ(7 * MiB, parse_size("007"));
}

TEST(SizeTest, OneSpaceMayPrecedeTheUnit) {
  EXPECT_EQ(2 * GiB, parse_size("2 GiB"));
  EXPECT_EQ(std::nullopt, parse_size("2  GiB"));
  EXPECT_EQ(std::nullopt, parse_size("2 "));
  EXPECT_EQ(std::nullopt, parse_size(" 2G"));
  EXPECT_EQ(std::nullopt, parse_size("2G "));
  EXPECT_EQ(std::nullopt, parse_size("2\tG"));
}

TEST(SizeTest, RejectsWhatIsNotAWholeSize) {
  for (const char* text : {"", "G", "GiB", "1.5G", "1,5G", "-1G", "+1G", "1e3", "0x10", "1_000",
                           "1GB", "1Gi", "1KB", "1B", "1P", "1PiB", "two", "1G1"}) {
    EXPECT_EQ(std::nullopt, parse_size(text)) << text;
  }
}

TEST(SizeTest, RejectsOverflow) {
  // 2^64 bytes is one past the largest size.
  EXPECT_EQ(std::nullopt, parse_size("16777216T"));
  EXPECT_EQ(16777215 * TiB, parse_size("16777215T"));
  EXPECT_EQ(17592186044415 * MiB, parse_size("17592186044415"));
  EXPECT_EQ(std::nullopt, parse_size("17592186044416"));
  EXPECT_EQ(std::nullopt, parse_size("18446744073709551616K"));
  EXPECT_EQ(std::nullopt, parse_size("99999999999999999999999999"));
}

TEST(SizeTest, ReadSizeTellsMalformedFromOverflow) {
  using Status = profile::SizeReading::Status;
  EXPECT_EQ(Status::overflow, profile::read_size("99999999999999999999GiB").status);
  EXPECT_EQ(Status::overflow, profile::read_size("16777216T").status);
  EXPECT_EQ(Status::malformed, profile::read_size("99999999999999999999GB").status);
  EXPECT_EQ(Status::malformed, profile::read_size("1.5G").status);
  EXPECT_EQ(Status::ok, profile::read_size("1G").status);
  EXPECT_EQ(GiB, profile::read_size("1G").bytes);
}

TEST(SizeTest, FormatUsesTheLargestExactUnit) {
  EXPECT_EQ("2GiB", profile::format_size(2 * GiB));
  EXPECT_EQ("1536MiB", profile::format_size(1536 * MiB));
  EXPECT_EQ("1TiB", profile::format_size(TiB));
  EXPECT_EQ("3KiB", profile::format_size(3 * KiB));
  EXPECT_EQ("0MiB", profile::format_size(0));
  EXPECT_EQ("2KiB", profile::format_size(1025));  // not whole KiB: rounded up
  for (std::uint64_t bytes : {KiB, 5 * MiB, 1536 * KiB, 64 * TiB, 16777215 * TiB}) {
    EXPECT_EQ(bytes, parse_size(profile::format_size(bytes)));
  }
}

}  // namespace
}  // namespace qvm
