#include "profile/override_applier.hpp"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "profile/override_text.hpp"
#include "profile/toml_text.hpp"

namespace qvm::profile {
namespace {

// Applies `--set KEY=VALUE` overrides to the parsed document.
class OverrideApplier {
 public:
  OverrideApplier(toml::table& document, Diagnostics& diagnostics)
      : document_(document), diagnostics_(diagnostics) {}

  void apply(std::size_t index, std::string_view text) {
    auto read = read_override(text);
    if (const auto* error = std::get_if<OverrideSyntaxError>(&read)) {
      diagnostics_.report_override(index, error->column, "", error->message);
      return;
    }
    const auto& parsed = std::get<OverrideText>(read);
    diagnostics_.set_value_column(index, parsed.value_column);
    std::optional<toml::table> holder = parse_value(index, parsed);
    if (!holder) {
      diagnostics_.report_override(index, parsed.value_column, "", "the value is not valid UTF-8");
      return;
    }
    toml::node& value = *holder->get("v");

    toml::node* current = &document_;
    std::string path;
    for (std::size_t s = 0; s < parsed.steps.size(); ++s) {
      const OverrideStep& step = parsed.steps[s];
      const bool last = s + 1 == parsed.steps.size();
      const bool as_index =
          step.kind == OverrideStep::Kind::index || (step.numeric && current->is_array());
      if (!as_index) {
        const std::string child_path = join_key(path, step.name);
        toml::table* table = current->as_table();
        if (table == nullptr) {
          diagnostics_.report_override(
              index, step.column, child_path,
              current->is_array()
                  ? path + " is an array; pick an entry, such as " + path + "[0]." + step.name
                  : path + " is " + with_article(type_name(*current)) + ", not a table");
          return;
        }
        toml::key key(step.name, key_region(index, step));
        if (last) {
          table->insert_or_assign(std::move(key), std::move(value));
          return;
        }
        toml::node* child = table->get(step.name);
        if (child == nullptr) {
          const OverrideStep& next = parsed.steps[s + 1];
          if (next.kind == OverrideStep::Kind::index || next.numeric) {
            child = &table->insert_or_assign(std::move(key), make_array(index, step.column))
                         .first->second;
          } else {
            child = &table->insert_or_assign(std::move(key), make_table(index, step.column))
                         .first->second;
          }
        }
        current = child;
        path = child_path;
      } else {
        const std::string child_path = path + "[" + std::to_string(step.index) + "]";
        toml::array* array = current->as_array();
        if (array == nullptr) {
          diagnostics_.report_override(
              index, step.column, child_path,
              path + " is " + with_article(type_name(*current)) + ", not an array");
          return;
        }
        const std::size_t size = array->size();
        if (step.index > size) {
          diagnostics_.report_override(
              index, step.column, path + "[" + step.name + "]",
              "index " + step.name + " is out of range; " + path + " has " + std::to_string(size) +
                  (size == 1 ? " entry" : " entries") + ", so use 0 to " + std::to_string(size) +
                  " (" + std::to_string(size) + " adds one)");
          return;
        }
        if (last) {
          if (step.index == size) {
            array->push_back(std::move(value));
          } else {
            array->replace(array->cbegin() + static_cast<std::ptrdiff_t>(step.index),
                           std::move(value));
          }
          return;
        }
        if (step.index == size) array->push_back(make_table(index, step.column));
        current = array->get(step.index);
        path = child_path;
      }
    }
  }

 private:
  static std::string source_name(std::size_t index) {
    return std::string(kOverrideSourcePrefix) + std::to_string(index);
  }

  static toml::source_region key_region(std::size_t index, const OverrideStep& step) {
    toml::source_region region;
    region.begin = {1, static_cast<toml::source_index>(step.column)};
    region.end = {1, static_cast<toml::source_index>(step.column + step.name.size())};
    region.path = std::make_shared<const std::string>(source_name(index));
    return region;
  }

  // toml++ offers no way to set a node's source, so new containers are parsed from a line
  // that puts their header at the override's column.
  static toml::table make_table(std::size_t index, int column) {
    toml::table parsed = toml::parse(std::string(static_cast<std::size_t>(column - 1), ' ') + "[v]",
                                     source_name(index));
    return std::move(*parsed.get_as<toml::table>("v"));
  }

  static toml::array make_array(std::size_t index, int column) {
    toml::table parsed = toml::parse(
        std::string(static_cast<std::size_t>(column - 1), ' ') + "[[v]]", source_name(index));
    toml::array array = std::move(*parsed.get_as<toml::array>("v"));
    array.clear();
    return array;
  }

  // The value as TOML when it is a single TOML value, else as a plain string. The line is laid
  // out so the value starts at the same column as in the override text.
  static std::optional<toml::table> parse_value(std::size_t index, const OverrideText& parsed) {
    const std::string prefix =
        "v=" + std::string(static_cast<std::size_t>(std::max(0, parsed.value_column - 3)), ' ');
    try {
      toml::table table = toml::parse(prefix + parsed.value, source_name(index));
      if (table.size() == 1 && table.contains("v")) return table;
    } catch (const toml::parse_error&) {
      // Not TOML: taken as a plain string below.
    }
    try {
      return toml::parse(prefix + toml_quote(parsed.value), source_name(index));
    } catch (const toml::parse_error&) {
      return std::nullopt;
    }
  }

  toml::table& document_;
  Diagnostics& diagnostics_;
};

}  // namespace

void apply_override(toml::table& document, Diagnostics& diagnostics, std::size_t index,
                    std::string_view text) {
  OverrideApplier(document, diagnostics).apply(index, text);
}

}  // namespace qvm::profile
