#pragma once

#include <filesystem>
#include <string>

namespace qvm::testing {

/// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

  /// Writes `content` to path()/name (creating folders) and returns the full path.
  std::filesystem::path write(const std::string& name, const std::string& content,
                              std::filesystem::perms perms = std::filesystem::perms::owner_read |
                                                             std::filesystem::perms::owner_write) const;

 private:
  std::filesystem::path path_;
};

/// The whole content of a file; throws if it cannot be read.
std::string read_file(const std::filesystem::path& path);

}  // namespace qvm::testing
