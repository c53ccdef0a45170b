#include "cloud_init/iso9660.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "support/cli_runner.hpp"
#include "support/temp_dir.hpp"

// The writer is checked by reading its images back two ways: with the small ECMA-119
// reader below (independent of the writer's code), and with isoinfo (genisoimage) when
// it is installed.

namespace qvm::cloud_init {
namespace {

namespace fs = std::filesystem;
constexpr std::size_t kSector = 2048;

std::uint32_t le32(const std::string& image, std::size_t at) {
  std::uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(image.at(at + i));
  return value;
}
std::uint32_t be32(const std::string& image, std::size_t at) {
  std::uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value = (value << 8) | static_cast<unsigned char>(image.at(at + i));
  return value;
}
std::uint16_t le16(const std::string& image, std::size_t at) {
  return static_cast<std::uint16_t>(static_cast<unsigned char>(image.at(at)) |
                                    (static_cast<unsigned char>(image.at(at + 1)) << 8));
}
std::uint16_t be16(const std::string& image, std::size_t at) {
  return static_cast<std::uint16_t>((static_cast<unsigned char>(image.at(at)) << 8) |
                                    static_cast<unsigned char>(image.at(at + 1)));
}

// A both-endian field must agree with itself; a mismatch fails the test.
std::uint32_t both32(const std::string& image, std::size_t at) {
  EXPECT_EQ(le32(image, at), be32(image, at + 4)) << "both-endian field at " << at;
  return le32(image, at);
}

std::string from_ucs2(const std::string& bytes) {
  std::string ascii;
  for (std::size_t i = 0; i + 1 < bytes.size(); i += 2) {
    EXPECT_EQ('\0', bytes[i]) << "non-ASCII UCS-2 in " << bytes;
    ascii += bytes[i + 1];
  }
  return ascii;
}

std::string trim_right(std::string text) {
  while (!text.empty() && (text.back() == ' ')) text.pop_back();
  return text;
}

struct RecordRead {
  std::string identifier;  // decoded
  std::uint32_t sector = 0;
  std::uint32_t size = 0;
  std::uint8_t flags = 0;
};

struct TreeRead {
  std::string volume_id;
  std::uint32_t volume_sectors = 0;
  std::vector<RecordRead> records;           // the root folder, "." and ".." included
  std::map<std::string, std::string> files;  // identifier -> content
};

// Reads the root folder the descriptor at `sector` describes.
TreeRead read_tree(const std::string& image, std::size_t sector) {
  TreeRead tree;
  const std::size_t at = sector * kSector;
  const bool joliet = image[at] == 2;
  EXPECT_EQ("CD001", image.substr(at + 1, 5));
  EXPECT_EQ(1, image[at + 6]);
  tree.volume_id =
      joliet ? trim_right(from_ucs2(image.substr(at + 40, 32))) : trim_right(image.substr(at + 40, 32));
  tree.volume_sectors = both32(image, at + 80);
  EXPECT_EQ(2048u, le16(image, at + 128));
  EXPECT_EQ(2048u, be16(image, at + 130));

  // The path tables name the same root as the descriptor's root record.
  const std::uint32_t root = both32(image, at + 156 + 2);
  const std::uint32_t root_size = both32(image, at + 156 + 10);
  const std::uint32_t path_table_size = both32(image, at + 132);
  EXPECT_EQ(10u, path_table_size);
  const std::size_t l_table = std::size_t{le32(image, at + 140)} * kSector;
  const std::size_t m_table = std::size_t{be32(image, at + 148)} * kSector;
  EXPECT_EQ(1, image.at(l_table));
  EXPECT_EQ(root, le32(image, l_table + 2));
  EXPECT_EQ(1u, le16(image, l_table + 6));
  EXPECT_EQ(root, be32(image, m_table + 2));
  EXPECT_EQ(1u, be16(image, m_table + 6));

  std::size_t offset = 0;
  while (offset < root_size) {
    const std::size_t record = std::size_t{root} * kSector + offset;
    const auto length = static_cast<unsigned char>(image.at(record));
    if (length == 0) {  // the rest of this sector is padding
      offset = (offset / kSector + 1) * kSector;
      continue;
    }
    EXPECT_EQ(offset / kSector, (offset + length - 1) / kSector) << "record straddles a sector";
    EXPECT_EQ(0u, length % 2);
    RecordRead read;
    read.sector = both32(image, record + 2);
    read.size = both32(image, record + 10);
    read.flags = static_cast<std::uint8_t>(image.at(record + 25));
    const auto name_length = static_cast<unsigned char>(image.at(record + 32));
    const std::string raw = image.substr(record + 33, name_length);
    read.identifier = (joliet && name_length > 1) ? from_ucs2(raw) : raw;
    if ((read.flags & 2) == 0) {
      tree.files[read.identifier] = image.substr(std::size_t{read.sector} * kSector, read.size);
    }
    tree.records.push_back(read);
    offset += length;
  }
  return tree;
}

struct ImageRead {
  TreeRead primary;
  TreeRead joliet;
};

ImageRead read_image(const std::string& image) {
  EXPECT_EQ(0u, image.size() % kSector);
  EXPECT_EQ(std::string(16 * kSector, '\0'), image.substr(0, 16 * kSector)) << "system area";
  ImageRead read;
  bool terminated = false;
  for (std::size_t sector = 16; sector * kSector < image.size() && !terminated; ++sector) {
    const auto type = static_cast<unsigned char>(image[sector * kSector]);
    if (type == 1) read.primary = read_tree(image, sector);
    if (type == 2) {
      EXPECT_EQ("%/E", image.substr(sector * kSector + 88, 3)) << "Joliet UCS-2 level 3";
      read.joliet = read_tree(image, sector);
    }
    terminated = type == 255;
  }
  EXPECT_TRUE(terminated) << "no volume descriptor set terminator";
  return read;
}

std::vector<std::string> identifiers(const TreeRead& tree) {
  std::vector<std::string> names;
  for (const RecordRead& record : tree.records) names.push_back(record.identifier);
  return names;
}

const std::vector<IsoFile> kSeedLike{{"meta-data", "instance-id: x\n"},
                                     {"user-data", "#cloud-config\n"}};

TEST(Iso9660Test, JolietKeepsNamesAndContentIsExact) {
  const std::string image = make_iso9660("cidata", kSeedLike);
  const ImageRead read = read_image(image);
  EXPECT_EQ("cidata", read.joliet.volume_id);
  const std::map<std::string, std::string> expected{{"meta-data", "instance-id: x\n"},
                                                    {"user-data", "#cloud-config\n"}};
  EXPECT_EQ(expected, read.joliet.files);
  EXPECT_EQ((std::vector<std::string>{std::string(1, '\0'), std::string(1, '\1'), "meta-data",
                                      "user-data"}),
            identifiers(read.joliet));
}

TEST(Iso9660Test, PrimaryTreeHasLevelOneNamesAndTheSameData) {
  const ImageRead read = read_image(make_iso9660("cidata", kSeedLike));
  EXPECT_EQ("cidata", read.primary.volume_id);
  const std::map<std::string, std::string> expected{{"META_DAT.;1", "instance-id: x\n"},
                                                    {"USER_DAT.;1", "#cloud-config\n"}};
  EXPECT_EQ(expected, read.primary.files);
  // "." and ".." are the root itself, flagged as folders.
  ASSERT_GE(read.primary.records.size(), 2u);
  EXPECT_EQ(read.primary.records[0].sector, read.primary.records[1].sector);
  EXPECT_EQ(2, read.primary.records[0].flags);
}

TEST(Iso9660Test, VolumeSizeCoversEveryFileAndNothingMore) {
  const std::string big(5000, 'x');  // three sectors
  const std::string image = make_iso9660("cidata", {{"big", big}, {"empty", ""}, {"tail", "t"}});
  const ImageRead read = read_image(image);
  EXPECT_EQ(image.size() / kSector, read.primary.volume_sectors);
  EXPECT_EQ(read.primary.volume_sectors, read.joliet.volume_sectors);
  EXPECT_EQ(big, read.joliet.files.at("big"));
  EXPECT_EQ("", read.joliet.files.at("empty"));
  EXPECT_EQ("t", read.joliet.files.at("tail"));
  // 16 system + 3 descriptors + 4 path tables + 2 roots + 3 + 0 + 1 data sectors.
  EXPECT_EQ(29u, image.size() / kSector);
}

TEST(Iso9660Test, SameInputGivesTheSameBytes) {
  EXPECT_EQ(make_iso9660("cidata", kSeedLike), make_iso9660("cidata", kSeedLike));
  EXPECT_NE(make_iso9660("cidata", kSeedLike), make_iso9660("CIDATA", kSeedLike));
}

TEST(Iso9660Test, RecordsAreSortedAndNeverStraddleASector) {
  // 60 names of 40 characters: 114-byte Joliet records, four sectors of them.
  std::vector<IsoFile> files;
  std::map<std::string, std::string> expected;
  for (int i = 59; i >= 0; --i) {
    std::string name = "collide-" + std::to_string(i) + std::string(40, 'n');
    name.resize(40);
    files.push_back({name, "content " + std::to_string(i)});
    expected[name] = "content " + std::to_string(i);
  }
  const ImageRead read = read_image(make_iso9660("many", files));
  EXPECT_EQ(expected, read.joliet.files);
  std::vector<std::string> names = identifiers(read.joliet);
  EXPECT_TRUE(std::is_sorted(names.begin() + 2, names.end()));
  // Level 1 names clash on their first 8 characters and are numbered apart.
  EXPECT_EQ(60u, read.primary.files.size());
  for (const auto& [name, content] : read.primary.files) {
    EXPECT_LE(name.size(), 12u) << name;  // 8 + "." + 3 + ";1", no extension here
    EXPECT_EQ(".;1", name.substr(name.size() - 3)) << name;
  }
  EXPECT_EQ("content 59", read.primary.files.at("COLLIDE_.;1"));  // the first one written
  EXPECT_EQ("content 58", read.primary.files.at("COLLID~1.;1"));
  EXPECT_EQ("content 0", read.primary.files.at("COLLI~59.;1"));
}

TEST(Iso9660Test, LevelOneNamesAreUppercaseEightThreeAndUnique) {
  const ImageRead read = read_image(make_iso9660(
      "v", {{"user-data", "a"}, {"user_data", "b"}, {"notes.text", "c"}, {".hidden", "d"}}));
  const std::map<std::string, std::string> expected{
      {"USER_DAT.;1", "a"}, {"USER_D~1.;1", "b"}, {"NOTES.TEX;1", "c"}, {"_.HID;1", "d"}};
  EXPECT_EQ(expected, read.primary.files);
}

TEST(Iso9660Test, RefusesWhatAnImageCannotHold) {
  const auto error_of = [](std::string_view volume, std::vector<IsoFile> files) -> std::string {
    try {
      make_iso9660(volume, files);
    } catch (const IsoError& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_EQ("ISO 9660: file name \"a/b\" may hold only printable ASCII other than * / : ; ? \\",
            error_of("v", {{"a/b", ""}}));
  EXPECT_EQ("ISO 9660: file name \"x;1\" may hold only printable ASCII other than * / : ; ? \\",
            error_of("v", {{"x;1", ""}}));
  EXPECT_EQ("ISO 9660: file name \"\" must have 1 to 64 characters", error_of("v", {{"", ""}}));
  EXPECT_EQ("ISO 9660: file name \"" + std::string(65, 'a') + "\" must have 1 to 64 characters",
            error_of("v", {{std::string(65, 'a'), ""}}));
  EXPECT_EQ("ISO 9660: \"..\" is not a file name", error_of("v", {{"..", ""}}));
  EXPECT_EQ("ISO 9660: two files are named \"a\"", error_of("v", {{"a", "1"}, {"a", "2"}}));
  EXPECT_EQ("ISO 9660: volume label \"c idata\" must have 1 to 16 letters, digits, \"_\" or \"-\"",
            error_of("c idata", {}));
  EXPECT_EQ("ISO 9660: volume label \"\" must have 1 to 16 letters, digits, \"_\" or \"-\"",
            error_of("", {}));
  EXPECT_EQ("(no error)", error_of(std::string(16, 'v'), {{std::string(64, 'a'), ""}}));
}

TEST(Iso9660Test, EmptyImageHasOnlyItsRoots) {
  const ImageRead read = read_image(make_iso9660("empty", {}));
  EXPECT_TRUE(read.joliet.files.empty());
  EXPECT_EQ(2u, read.joliet.records.size());
  EXPECT_EQ(25u, read.primary.volume_sectors);
}

// --- isoinfo (Debian package genisoimage), when installed ---

bool have_isoinfo() {
  return ::access("/usr/bin/isoinfo", X_OK) == 0;
}

TEST(Iso9660Test, IsoinfoReadsLabelNamesAndContent) {
  if (!have_isoinfo()) GTEST_SKIP() << "isoinfo is not installed (apt-get install genisoimage)";
  testing::TempDir dir;
  const std::string long_content(3000, 'L');
  const fs::path iso = dir.write(
      "seed.iso", make_iso9660("cidata", {{"meta-data", "instance-id: abc\n"},
                                          {"user-data", "#cloud-config\nhostname: h\n"},
                                          {"long", long_content}}));
  const auto isoinfo = [&](std::vector<std::string> args) {
    std::vector<std::string> argv{"/usr/bin/isoinfo", "-i", iso.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    testing::CommandResult result = testing::run_command(argv);
    EXPECT_EQ(0, result.exit_code) << result.err;
    return result.out;
  };
  const std::string description = isoinfo({"-d"});
  EXPECT_NE(std::string::npos, description.find("Volume id: cidata")) << description;
  EXPECT_NE(std::string::npos, description.find("Joliet with UCS level 3 found")) << description;
  EXPECT_NE(std::string::npos, description.find("Logical block size is: 2048")) << description;
  EXPECT_NE(std::string::npos,
            description.find("Volume size is: " + std::to_string(fs::file_size(iso) / 2048)))
      << description;

  const std::string joliet_listing = isoinfo({"-J", "-f"});
  EXPECT_EQ("/long\n/meta-data\n/user-data\n", joliet_listing);
  const std::string primary_listing = isoinfo({"-f"});
  EXPECT_EQ("/LONG.;1\n/META_DAT.;1\n/USER_DAT.;1\n", primary_listing);
  EXPECT_EQ("instance-id: abc\n", isoinfo({"-J", "-x", "/meta-data"}));
  EXPECT_EQ("#cloud-config\nhostname: h\n", isoinfo({"-J", "-x", "/user-data"}));
  EXPECT_EQ(long_content, isoinfo({"-J", "-x", "/long"}));
  EXPECT_EQ("instance-id: abc\n", isoinfo({"-x", "/META_DAT.;1"}));
}

}  // namespace
}  // namespace qvm::cloud_init
