#include "profile/diagnostics.hpp"

#include <algorithm>
#include <tuple>
#include <utility>

#include "profile/checks.hpp"

namespace qvm::profile {
namespace {

// A source line fit to print under a message: control characters (a stray ESC or newline)
// become "?", one column each, so the caret still lines up; tabs stay for the caret line.
std::string printable(std::string_view line) {
  std::string shown(line);
  for (char& c : shown) {
    const auto byte = static_cast<unsigned char>(c);
    if ((byte < 0x20 && c != '\t') || byte == 0x7F) c = '?';
  }
  return shown;
}

}  // namespace

std::string_view type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return "string";
    case toml::node_type::integer:
      return "integer";
    case toml::node_type::floating_point:
      return "float";
    case toml::node_type::boolean:
      return "boolean";
    case toml::node_type::array:
      return "array";
    case toml::node_type::table:
      return "table";
    case toml::node_type::date:
      return "date";
    case toml::node_type::time:
      return "time";
    case toml::node_type::date_time:
      return "date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

// "an integer", "a table": for sentences about a node's type.
std::string with_article(std::string_view type) {
  const bool vowel = type == "integer" || type == "array";
  return (vowel ? "an " : "a ") + std::string(type);
}

std::string join_names(std::span<const std::string_view> names) {
  std::string joined;
  for (std::string_view name : names) {
    if (!joined.empty()) joined += ", ";
    joined += name;
  }
  return joined;
}
std::optional<std::size_t> override_index(const toml::source_region& where) {
  if (!where.path || !where.path->starts_with(kOverrideSourcePrefix)) return std::nullopt;
  return std::stoul(where.path->substr(kOverrideSourcePrefix.size()));
}

bool from_override(const toml::node& node) {
  return override_index(node.source()).has_value();
}

Diagnostics::Diagnostics(std::string file, std::string_view text,
                         std::span<const std::string> overrides)
    : file_(std::move(file)), overrides_(overrides), value_columns_(overrides.size(), 1) {
  for (std::string_view line : split(text, '\n')) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines_.push_back(printable(line));
  }
}

void Diagnostics::set_value_column(std::size_t override_index, int column) {
  value_columns_[override_index] = column;
}

void Diagnostics::report(const toml::source_region& where, const std::string& key,
                         std::string message) {
  ProfileDiagnostic diagnostic;
  diagnostic.key = key;
  diagnostic.message = std::move(message);
  if (const std::optional<std::size_t> index = override_index(where)) {
    diagnostic.file = kOverrideFile;
    diagnostic.line = static_cast<int>(*index) + 1;
    // Override values are parsed from a line laid out like the override text, so their
    // columns already match it; only continuation lines of a multi-line value do not.
    diagnostic.column =
        where.begin.line == 1 ? static_cast<int>(where.begin.column) : value_columns_[*index];
    diagnostic.source_line = printable(overrides_[*index]);
    add(Group::overrides, std::move(diagnostic));
    return;
  }
  diagnostic.file = file_;
  diagnostic.line = static_cast<int>(where.begin.line);
  diagnostic.column = static_cast<int>(where.begin.column);
  if (diagnostic.line > 0) diagnostic.source_line = source_line(diagnostic.line);
  add(Group::file, std::move(diagnostic));
}

void Diagnostics::report_unplaced(const std::string& key, std::string message) {
  add(Group::file, ProfileDiagnostic{file_, 0, 0, key, std::move(message), ""});
}

void Diagnostics::report_override(std::size_t index, int column, const std::string& key,
                                  std::string message) {
  add(Group::overrides,
      ProfileDiagnostic{std::string(kOverrideFile), static_cast<int>(index) + 1, column, key,
                        std::move(message), printable(overrides_[index])});
}

void Diagnostics::report_name_option(std::string message) {
  add(Group::name_option,
      ProfileDiagnostic{std::string(kNameOptionFile), 0, 0, "name", std::move(message), ""});
}

void Diagnostics::report_syntax(const toml::parse_error& error) {
  report(error.source(), "", std::string(error.description()));
}

std::vector<ProfileDiagnostic> Diagnostics::sorted() const {
  std::vector<Entry> entries = entries_;
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.group, a.diagnostic.line, a.diagnostic.column) <
           std::tie(b.group, b.diagnostic.line, b.diagnostic.column);
  });
  std::vector<ProfileDiagnostic> diagnostics;
  for (Entry& entry : entries) diagnostics.push_back(std::move(entry.diagnostic));
  return diagnostics;
}

std::string Diagnostics::source_line(int line) const {
  const auto index = static_cast<std::size_t>(line) - 1;
  return index < lines_.size() ? lines_[index] : std::string();
}

void Diagnostics::add(Group group, ProfileDiagnostic diagnostic) {
  if (!diagnostic.key.empty() && !keys_.insert(diagnostic.key).second) return;
  entries_.push_back(Entry{group, std::move(diagnostic)});
}

}  // namespace qvm::profile
