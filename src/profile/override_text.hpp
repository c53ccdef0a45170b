#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace qvm::profile {

/// One step of an override's key path: `disk` and `[0]` in `disk[0].size`. A purely numeric
/// dotted segment (`disk.0.size`) is a key the applier may read as an index.
struct OverrideStep {
  enum class Kind { key, index };
  Kind kind = Kind::key;
  std::string name;       // the key, or the digits of an index as written
  std::size_t index = 0;  // kind == index, or a numeric key (saturates at 1000000)
  bool numeric = false;   // a key made only of digits
  int column = 1;         // 1-based position of the step in the override text
};

/// A well-formed "KEY=VALUE" override, split up.
struct OverrideText {
  std::vector<OverrideStep> steps;  // at least one; the first is a key
  std::string value;                // without surrounding blanks
  int value_column = 1;             // 1-based position of `value` in the override text
};

/// Why an override is not "KEY=VALUE": where (1-based column) and what.
struct OverrideSyntaxError {
  int column = 1;
  std::string message;
};

/// Splits `text` at its first "=" and reads the key path on the left.
std::variant<OverrideText, OverrideSyntaxError> read_override(std::string_view text);

}  // namespace qvm::profile
