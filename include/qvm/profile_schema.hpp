#pragma once

#include <nlohmann/json.hpp>

namespace qvm {

/// A JSON Schema (draft 2020-12) of a profile read as JSON (TOML tables as objects): every
/// key with its type, range or allowed values, default and a one-line description, and no
/// other key allowed in any table. For editors (taplo, Even Better TOML); parse_profile
/// (qvm/profile.hpp) reads profiles from the same key table but checks more than a schema
/// can say (files, clashes, combinations of keys). Pure; thread-safe.
nlohmann::json profile_json_schema();

}  // namespace qvm
