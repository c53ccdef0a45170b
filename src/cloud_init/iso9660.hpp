#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "qvm/error.hpp"

namespace qvm::cloud_init {

/// One file in the root folder of an ISO 9660 image.
struct IsoFile {
  std::string name;     // 1-64 printable ASCII characters, none of * / : ; ? \ (Joliet's rules)
  std::string content;  // any bytes, at most 4 GiB - 1
};

/// A name or content that an ISO 9660 image cannot hold.
class IsoError : public Error {
 public:
  using Error::Error;
};

/// The sector size of ISO 9660 images, in bytes.
inline constexpr std::size_t kIsoSectorSize = 2048;

/// A complete ISO 9660 image (bytes, a whole number of 2048-byte sectors) with `files` in
/// its root folder and no subfolders. Names are kept as given through a Joliet tree (which
/// Linux, Windows and cloud-init read); the primary tree holds 8.3 uppercase ISO level 1
/// names for readers without Joliet. `volume_id` (1-16 characters of A-Z a-z 0-9 _ -) labels
/// both trees. Every timestamp is 1970-01-01 UTC, so the same input gives the same bytes.
/// Pure. Throws IsoError for a bad or duplicate name, an oversized file or a bad label.
std::string make_iso9660(std::string_view volume_id, const std::vector<IsoFile>& files);

}  // namespace qvm::cloud_init
