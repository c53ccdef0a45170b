#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

// Every key a profile may have, in one table: what the reader accepts (check_keys, type and
// range errors, did-you-mean), what `qvm schema` prints and what the README lists.
namespace qvm::profile {

enum class KeyType {
  string,   // free text (checked further by its reader)
  path,     // a string naming a file or folder; relative to the profile's folder
  integer,  // within [min, max]
  boolean,
  enumeration,   // a string, one of `values`
  size,          // a string with a unit or an integer count of MiB; [min, max] bytes
  string_array,  // an array of strings
  table,         // a [section]
  table_array,   // an array of tables, [[section]]
};

/// One profile key: where it lives, what it takes and what it means.
struct KeySpec {
  std::string_view section{};  // "" for the top level, else the table's key ("ready", "disk")
  std::string_view key{};
  KeyType type = KeyType::string;
  std::int64_t min = 0;  // integer: the range; size: the range in bytes
  std::int64_t max = 0;
  std::string_view unit{};  // appended to an integer's range in messages, e.g. " (seconds)"
  bool whole_mib = false;   // size: only whole MiB
  std::span<const std::string_view> values{};  // enumeration: the spellings, in listed order
  std::string_view pattern{};       // string: an ECMAScript regex the schema adds (anchored)
  bool required = false;            // must be present in its table
  std::string_view default_json{};  // the default as JSON text; "" when it has none
  std::string_view doc{};           // one line: what the key means
};

/// Every key, section by section, each section's keys in the order messages list them.
std::span<const KeySpec> profile_keys();

/// The keys of `section` ("" for the top level), in table order.
std::vector<std::string_view> section_keys(std::string_view section);

/// The entry for `key` in `section`. Throws std::logic_error if the table lacks it (a
/// reader asking for a key the table does not list is a bug).
const KeySpec& key_spec(std::string_view section, std::string_view key);

/// What a type error says was expected, e.g. "string (one of q35, pc, microvm)",
/// "table ([ready])", "string with a unit or integer (MiB)".
std::string expected_type(const KeySpec& spec);

/// A JSON Schema (draft 2020-12) of the profile as JSON (TOML's tables as objects): every
/// key with its type, range or values, default and description; no other key allowed.
nlohmann::json json_schema();

}  // namespace qvm::profile
