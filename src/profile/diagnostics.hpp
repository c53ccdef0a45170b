#pragma once

#include <cstddef>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "profile/toml.hpp"
#include "qvm/profile.hpp"

namespace qvm::profile {

/// Nodes that came from `--set` carry this source path plus the override's index, so every
/// diagnostic can be traced to the file or to the override without a side table.
inline constexpr std::string_view kOverrideSourcePrefix = "--set#";
inline constexpr std::string_view kOverrideFile = "--set";
inline constexpr std::string_view kNameOptionFile = "--name";

/// The TOML type of `node` as messages name it ("string", "integer", "date-time", ...).
std::string_view type_name(const toml::node& node);

/// "an integer", "a table": for sentences about a node's type.
std::string with_article(std::string_view type);

/// The names separated by ", ".
std::string join_names(std::span<const std::string_view> names);

/// The index of the override a node at `where` came from; nullopt for the file.
std::optional<std::size_t> override_index(const toml::source_region& where);

/// True if `node` came from a `--set` override.
bool from_override(const toml::node& node);

/// Collects diagnostics with their places; one per key; sorted on the way out.
class Diagnostics {
 public:
  /// `file` names the profile in messages; `text` and `overrides` give the source lines.
  Diagnostics(std::string file, std::string_view text, std::span<const std::string> overrides);

  /// Where the value of override number `override_index` starts in its text.
  void set_value_column(std::size_t override_index, int column);

  /// A problem at `where` (in the file or in an override).
  void report(const toml::source_region& where, const std::string& key, std::string message);

  /// A problem of the whole file, with no single place in it.
  void report_unplaced(const std::string& key, std::string message);

  /// A malformed override, at `column` of override number `index`.
  void report_override(std::size_t index, int column, const std::string& key, std::string message);

  /// A bad --name.
  void report_name_option(std::string message);

  /// A syntax error: toml++'s description at its position.
  void report_syntax(const toml::parse_error& error);

  /// True if nothing was reported.
  bool empty() const { return entries_.empty(); }

  /// What was reported: the file's problems by place, then the overrides', then --name's.
  std::vector<ProfileDiagnostic> sorted() const;

 private:
  enum class Group { file, overrides, name_option };
  struct Entry {
    Group group;
    ProfileDiagnostic diagnostic;
  };

  std::string source_line(int line) const;
  void add(Group group, ProfileDiagnostic diagnostic);

  std::string file_;
  std::span<const std::string> overrides_;
  std::vector<int> value_columns_;
  std::vector<std::string> lines_;
  std::vector<Entry> entries_;
  std::set<std::string> keys_;
};

}  // namespace qvm::profile
