#include "cloud_init/iso9660.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <set>

namespace qvm::cloud_init {
namespace {

// Layout (ECMA-119): 16 sectors of system area, then the primary volume descriptor, the
// Joliet supplementary one and the set terminator; then the four path tables (L and M for
// each tree), the two root folders, and the files' data, each file from a sector boundary.
constexpr std::uint32_t kSector = kIsoSectorSize;
constexpr std::uint32_t kPrimaryDescriptorSector = 16;
constexpr std::uint32_t kJolietDescriptorSector = 17;
constexpr std::uint32_t kTerminatorSector = 18;
constexpr std::uint32_t kFirstPathTableSector = 19;
constexpr std::uint32_t kPathTableSectors = 4;  // primary L, primary M, Joliet L, Joliet M
constexpr std::uint32_t kRootPathTableSize = 10;  // one record: the root, identifier 0x00
constexpr std::size_t kMaxJolietName = 64;
constexpr std::size_t kMaxVolumeId = 16;  // Joliet's 32 bytes of UCS-2
constexpr std::size_t kDirectoryRecordBase = 33;
constexpr std::uint8_t kDirectoryFlag = 0x02;

std::uint32_t sectors_for(std::uint64_t bytes) {
  return static_cast<std::uint32_t>((bytes + kSector - 1) / kSector);
}

// A sector-addressed image under construction; every multi-byte number in ISO 9660 is
// written little-endian, big-endian, or both ("both-endian") at a fixed offset.
class Image {
 public:
  explicit Image(std::uint32_t sectors) : bytes_(std::size_t{sectors} * kSector, '\0') {}

  void u8(std::size_t at, std::uint8_t value) { bytes_[at] = static_cast<char>(value); }
  void le16(std::size_t at, std::uint16_t value) {
    u8(at, value & 0xFF);
    u8(at + 1, value >> 8);
  }
  void be16(std::size_t at, std::uint16_t value) {
    u8(at, value >> 8);
    u8(at + 1, value & 0xFF);
  }
  void le32(std::size_t at, std::uint32_t value) {
    for (int i = 0; i < 4; ++i) u8(at + i, (value >> (8 * i)) & 0xFF);
  }
  void be32(std::size_t at, std::uint32_t value) {
    for (int i = 0; i < 4; ++i) u8(at + i, (value >> (8 * (3 - i))) & 0xFF);
  }
  void both16(std::size_t at, std::uint16_t value) {
    le16(at, value);
    be16(at + 2, value);
  }
  void both32(std::size_t at, std::uint32_t value) {
    le32(at, value);
    be32(at + 4, value);
  }
  void text(std::size_t at, std::string_view value) { bytes_.replace(at, value.size(), value); }
  // An a- or d-character field: the text, then spaces up to `width`.
  void padded(std::size_t at, std::string_view value, std::size_t width) {
    text(at, std::string(width, ' '));
    text(at, value.substr(0, width));
  }

  std::string take() { return std::move(bytes_); }

 private:
  std::string bytes_;
};

// UCS-2 big-endian, as Joliet stores every name and label (the input is ASCII).
std::string ucs2(std::string_view ascii) {
  std::string out;
  for (char c : ascii) {
    out += '\0';
    out += c;
  }
  return out;
}

// A Joliet text field: UCS-2 text, then UCS-2 spaces up to `width` bytes.
std::string ucs2_padded(std::string_view ascii, std::size_t width) {
  std::string out = ucs2(ascii);
  while (out.size() + 2 <= width) out += std::string("\0 ", 2);
  return out;
}

bool is_d_character(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

char to_d_character(char c) {
  if (c >= 'a' && c <= 'z') return static_cast<char>(c - 'a' + 'A');
  return is_d_character(c) ? c : '_';
}

// "user-data" -> "USER_DAT.;1", "notes.text" -> "NOTES.TEX;1": ISO 9660 level 1 names.
// A clash gets a numbered base ("USER_D~1.;1").
std::string level1_name(std::string_view name, std::set<std::string>& used) {
  const std::size_t dot = name.rfind('.');
  std::string base;
  std::string extension;
  for (char c : name.substr(0, dot)) base += to_d_character(c);
  if (dot != std::string_view::npos) {
    for (char c : name.substr(dot + 1)) extension += to_d_character(c);
  }
  if (base.empty()) base = "_";
  if (extension.size() > 3) extension.resize(3);
  std::string candidate = base.substr(0, 8) + "." + extension + ";1";
  for (int n = 1; !used.insert(candidate).second; ++n) {
    const std::string suffix = "~" + std::to_string(n);
    candidate = base.substr(0, 8 - suffix.size()) + suffix + "." + extension + ";1";
  }
  return candidate;
}

void check_name(const std::string& name) {
  if (name.empty() || name.size() > kMaxJolietName) {
    throw IsoError("ISO 9660: file name \"" + name + "\" must have 1 to 64 characters");
  }
  for (char c : name) {
    const bool printable = c >= 0x20 && c < 0x7F;
    if (!printable || std::string_view("*/:;?\\").find(c) != std::string_view::npos) {
      throw IsoError("ISO 9660: file name \"" + name +
                     "\" may hold only printable ASCII other than * / : ; ? \\");
    }
  }
  if (name == "." || name == "..") {
    throw IsoError("ISO 9660: \"" + name + "\" is not a file name");
  }
}

void check_volume_id(std::string_view volume_id) {
  const bool valid =
      !volume_id.empty() && volume_id.size() <= kMaxVolumeId &&
      std::all_of(volume_id.begin(), volume_id.end(), [](char c) {
        return is_d_character(c) || (c >= 'a' && c <= 'z') || c == '-';
      });
  if (!valid) {
    throw IsoError("ISO 9660: volume label \"" + std::string(volume_id) +
                   "\" must have 1 to 16 letters, digits, \"_\" or \"-\"");
  }
}

struct Entry {
  std::string identifier;  // as stored: level 1 name, or UCS-2 for Joliet
  std::uint32_t sector = 0;
  std::uint32_t size = 0;
  bool directory = false;
};

std::size_t record_length(std::size_t identifier_size) {
  const std::size_t length = kDirectoryRecordBase + identifier_size;
  return length + (length % 2);  // records start at even offsets
}

// One directory record (ECMA-119 9.1) at `at`; returns its length.
std::size_t write_record(Image& image, std::size_t at, const Entry& entry) {
  const std::size_t length = record_length(entry.identifier.size());
  image.u8(at, static_cast<std::uint8_t>(length));
  image.both32(at + 2, entry.sector);
  image.both32(at + 10, entry.size);
  // Recording time: 1970-01-01 00:00:00, offset 0 from GMT.
  image.u8(at + 18, 70);
  image.u8(at + 19, 1);
  image.u8(at + 20, 1);
  image.u8(at + 25, entry.directory ? kDirectoryFlag : 0);
  image.both16(at + 28, 1);  // volume sequence number
  image.u8(at + 32, static_cast<std::uint8_t>(entry.identifier.size()));
  image.text(at + 33, entry.identifier);
  return length;
}

// The bytes a folder's records take: records never straddle a sector.
std::uint32_t directory_size(const std::vector<Entry>& entries) {
  std::uint32_t sectors = 1;
  std::size_t used = 0;
  for (const Entry& entry : entries) {
    const std::size_t length = record_length(entry.identifier.size());
    if (used + length > kSector) {
      ++sectors;
      used = 0;
    }
    used += length;
  }
  return sectors * kSector;
}

void write_directory(Image& image, std::uint32_t sector, const std::vector<Entry>& entries) {
  std::size_t at = std::size_t{sector} * kSector;
  std::size_t used = 0;
  for (const Entry& entry : entries) {
    const std::size_t length = record_length(entry.identifier.size());
    if (used + length > kSector) {
      at += kSector - used;
      used = 0;
    }
    write_record(image, at, entry);
    at += length;
    used += length;
  }
}

// The path tables of a tree with only a root: one record, in both byte orders.
void write_path_tables(Image& image, std::uint32_t l_sector, std::uint32_t m_sector,
                       std::uint32_t root_sector) {
  const std::size_t l = std::size_t{l_sector} * kSector;
  const std::size_t m = std::size_t{m_sector} * kSector;
  image.u8(l, 1);
  image.le32(l + 2, root_sector);
  image.le16(l + 6, 1);
  image.u8(m, 1);
  image.be32(m + 2, root_sector);
  image.be16(m + 6, 1);
}

struct Tree {
  bool joliet = false;
  std::uint32_t root_sector = 0;
  std::uint32_t root_size = 0;
  std::uint32_t l_path_table = 0;
  std::uint32_t m_path_table = 0;
};

void write_volume_descriptor(Image& image, std::uint32_t sector, const Tree& tree,
                             std::string_view volume_id, std::uint32_t total_sectors) {
  const std::size_t at = std::size_t{sector} * kSector;
  image.u8(at, tree.joliet ? 2 : 1);
  image.text(at + 1, "CD001");
  image.u8(at + 6, 1);
  const auto field = [&](std::size_t offset, std::string_view value, std::size_t width) {
    if (tree.joliet) {
      image.text(at + offset, ucs2_padded(value, width));
    } else {
      image.padded(at + offset, value, width);
    }
  };
  field(8, "LINUX", 32);  // system identifier
  field(40, volume_id, 32);
  image.both32(at + 80, total_sectors);
  if (tree.joliet) image.text(at + 88, "%/E");  // UCS-2 level 3
  image.both16(at + 120, 1);                    // volume set size
  image.both16(at + 124, 1);                    // volume sequence number
  image.both16(at + 128, static_cast<std::uint16_t>(kSector));
  image.both32(at + 132, kRootPathTableSize);
  image.le32(at + 140, tree.l_path_table);
  image.be32(at + 148, tree.m_path_table);
  write_record(image, at + 156, Entry{std::string(1, '\0'), tree.root_sector, tree.root_size, true});
  field(190, "", 128);  // volume set
  field(318, "", 128);  // publisher
  field(446, "", 128);  // data preparer
  field(574, "QVM", 128);  // application
  field(702, "", 37);   // copyright file
  field(739, "", 37);   // abstract file
  field(776, "", 37);   // bibliographic file
  // Creation, modification, expiration and effective dates: "not specified".
  for (std::size_t date = 813; date < 881; date += 17) {
    image.text(at + date, std::string(16, '0'));
  }
  image.u8(at + 881, 1);  // file structure version
}

}  // namespace

std::string make_iso9660(std::string_view volume_id, const std::vector<IsoFile>& files) {
  check_volume_id(volume_id);
  std::set<std::string> names;
  for (const IsoFile& file : files) {
    check_name(file.name);
    if (!names.insert(file.name).second) {
      throw IsoError("ISO 9660: two files are named \"" + file.name + "\"");
    }
    if (file.content.size() > std::numeric_limits<std::uint32_t>::max()) {
      throw IsoError("ISO 9660: \"" + file.name + "\" is larger than 4 GiB - 1 bytes");
    }
  }

  // Both trees list the same files, each sorted by its own identifiers (ECMA-119 9.3).
  std::vector<Entry> primary{{std::string(1, '\0'), 0, 0, true}, {std::string(1, '\1'), 0, 0, true}};
  std::vector<Entry> joliet = primary;
  std::set<std::string> used_level1;
  for (const IsoFile& file : files) {
    const auto size = static_cast<std::uint32_t>(file.content.size());
    primary.push_back(Entry{level1_name(file.name, used_level1), 0, size, false});
    joliet.push_back(Entry{ucs2(file.name), 0, size, false});
  }

  Tree primary_tree{false};
  Tree joliet_tree{true};
  primary_tree.l_path_table = kFirstPathTableSector;
  primary_tree.m_path_table = kFirstPathTableSector + 1;
  joliet_tree.l_path_table = kFirstPathTableSector + 2;
  joliet_tree.m_path_table = kFirstPathTableSector + 3;
  primary_tree.root_sector = kFirstPathTableSector + kPathTableSectors;
  primary_tree.root_size = directory_size(primary);
  joliet_tree.root_sector = primary_tree.root_sector + primary_tree.root_size / kSector;
  joliet_tree.root_size = directory_size(joliet);

  // File data in input order; both trees point at the same extents.
  std::uint32_t next = joliet_tree.root_sector + joliet_tree.root_size / kSector;
  std::vector<std::uint32_t> file_sectors;
  for (const IsoFile& file : files) {
    file_sectors.push_back(next);
    next += sectors_for(file.content.size());
  }
  const std::uint32_t total_sectors = next;

  for (std::size_t i = 0; i < files.size(); ++i) {
    primary[i + 2].sector = file_sectors[i];
    joliet[i + 2].sector = file_sectors[i];
  }
  for (auto* tree : {&primary, &joliet}) {
    const Tree& layout = tree == &primary ? primary_tree : joliet_tree;
    for (std::size_t i = 0; i < 2; ++i) {  // "." and ".." of the root are the root
      (*tree)[i].sector = layout.root_sector;
      (*tree)[i].size = layout.root_size;
    }
    std::sort(tree->begin() + 2, tree->end(),
              [](const Entry& a, const Entry& b) { return a.identifier < b.identifier; });
  }

  Image image(total_sectors);
  write_volume_descriptor(image, kPrimaryDescriptorSector, primary_tree, volume_id, total_sectors);
  write_volume_descriptor(image, kJolietDescriptorSector, joliet_tree, volume_id, total_sectors);
  const std::size_t terminator = std::size_t{kTerminatorSector} * kSector;
  image.u8(terminator, 255);
  image.text(terminator + 1, "CD001");
  image.u8(terminator + 6, 1);
  write_path_tables(image, primary_tree.l_path_table, primary_tree.m_path_table,
                    primary_tree.root_sector);
  write_path_tables(image, joliet_tree.l_path_table, joliet_tree.m_path_table,
                    joliet_tree.root_sector);
  write_directory(image, primary_tree.root_sector, primary);
  write_directory(image, joliet_tree.root_sector, joliet);
  for (std::size_t i = 0; i < files.size(); ++i) {
    image.text(std::size_t{file_sectors[i]} * kSector, files[i].content);
  }
  return image.take();
}

}  // namespace qvm::cloud_init
