#include <string>
#include <system_error>

#include "qvm/profile.hpp"

namespace qvm {
namespace {

// Length in bytes of the UTF-8 sequence that starts with `lead` (1 for stray bytes), so the
// caret lines up with toml++'s columns, which count code points.
std::size_t sequence_length(unsigned char lead) {
  if (lead >= 0xF0 && lead <= 0xF7) return 4;
  if (lead >= 0xE0) return lead <= 0xEF ? 3 : 1;
  if (lead >= 0xC0) return 2;
  return 1;
}

std::string caret_line(const std::string& source_line, int column) {
  std::string caret;
  std::size_t at = 0;
  for (int i = 1; i < column; ++i) {
    if (at < source_line.size() && source_line[at] == '\t') {
      caret += '\t';
    } else {
      caret += ' ';
    }
    if (at < source_line.size()) {
      at += sequence_length(static_cast<unsigned char>(source_line[at]));
    }
  }
  return caret + '^';
}

std::string join(const std::vector<ProfileDiagnostic>& diagnostics) {
  std::string text;
  for (const ProfileDiagnostic& d : diagnostics) {
    if (!text.empty()) text += '\n';
    text += d.to_string();
  }
  return text;
}

class RealFileChecker final : public FileChecker {
 public:
  bool exists(const std::filesystem::path& path) const override {
    std::error_code error;
    return std::filesystem::exists(path, error);
  }
  bool is_directory(const std::filesystem::path& path) const override {
    std::error_code error;
    return std::filesystem::is_directory(path, error);
  }
};

}  // namespace

std::string ProfileDiagnostic::to_string() const {
  std::string text = file;
  if (line > 0) text += ':' + std::to_string(line) + ':' + std::to_string(column);
  text += ": ";
  if (!key.empty()) text += key + ": ";
  text += message;
  if (line > 0) text += '\n' + source_line + '\n' + caret_line(source_line, column);
  return text;
}

ProfileError::ProfileError(std::vector<ProfileDiagnostic> diagnostics)
    : Error(join(diagnostics)), diagnostics_(std::move(diagnostics)) {}

const FileChecker& real_file_checker() {
  static const RealFileChecker checker;
  return checker;
}

}  // namespace qvm
