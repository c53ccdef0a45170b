#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "profile/diagnostics.hpp"
#include "profile/did_you_mean.hpp"
#include "profile/enum_names.hpp"
#include "profile/schema.hpp"
#include "profile/toml.hpp"
#include "profile/toml_text.hpp"
#include "qvm/profile.hpp"

namespace qvm::profile {

/// A table being read, the dotted key it lives at ("disk[1]") and its section in the key
/// table ("disk"; "" for the top level).
struct TableRef {
  const toml::table& table;
  std::string prefix;
  std::string_view section;

  const toml::node* get(std::string_view key) const { return table.get(key); }
  const toml::source_region& key_source(std::string_view key) const {
    return table.find(key)->first.source();
  }
  std::string path(std::string_view key) const { return join_key(prefix, key); }
};

/// Turns a parsed (and overridden) document into a Profile, reporting every problem to the
/// Diagnostics it was given. Keys, types and ranges come from the key table (schema.hpp);
/// each section has its reader (reader.cpp: the top level; read_sections.cpp: [ready],
/// [boot], [cloud_init], [shutdown], [logs], [qemu]; read_devices.cpp: [[disk]], [[net]],
/// [[share]]). Single use: one validate() per reader.
class ProfileReader {
 public:
  /// Relative paths in the file resolve against `base_dir`; `files` says what exists.
  ProfileReader(Diagnostics& diagnostics, const FileChecker& files, std::filesystem::path base_dir);

  /// The profile `document` describes (defaults where it is silent); meaningful only if
  /// nothing was reported.
  Profile validate(const toml::table& document, const std::filesystem::path& origin,
                   const ProfileOptions& options);

 private:
  void report(const toml::node& node, const std::string& key, std::string message);
  void type_error(const toml::node& node, const std::string& key, std::string_view expected);
  void check_keys(const TableRef& table);

  std::optional<std::string> string_value(const toml::node& node, const std::string& key,
                                          bool allow_control = false);
  std::optional<std::string> get_user_name(const TableRef& table, std::string_view why_not_root);
  std::optional<std::string> get_string(const TableRef& table, std::string_view key,
                                        bool allow_control = false);
  std::optional<std::int64_t> get_integer(const TableRef& table, std::string_view key);
  std::optional<bool> get_bool(const TableRef& table, std::string_view key);
  template <class E, std::size_t N>
  std::optional<E> get_enum(const TableRef& table, std::string_view key,
                            const EnumSpec<E, N>& spec);
  const toml::table* get_table(const TableRef& parent, std::string_view key);
  std::vector<TableRef> get_table_array(const TableRef& top, std::string_view key);
  std::filesystem::path resolve(const toml::node& node, const std::string& text) const;
  std::optional<std::filesystem::path> get_path(const TableRef& table, std::string_view key);
  std::optional<std::filesystem::path> get_existing_file(const TableRef& table,
                                                         std::string_view key);
  std::optional<std::uint64_t> get_size(const TableRef& table, std::string_view key);
  std::optional<std::string> interface_name(const TableRef& table, std::string_view key);

  void read_name(const TableRef& top, const std::filesystem::path& origin,
                 const ProfileOptions& options, Profile& profile);
  Ready read_ready(const TableRef& table, const Profile& profile);
  Boot read_boot(const TableRef& table);
  void read_disks(const TableRef& top, Profile& profile);
  void read_nets(const TableRef& top, Profile& profile);
  CloudInit read_cloud_init(const TableRef& table, const Profile& profile);
  void read_shares(const TableRef& top, Profile& profile);
  Shutdown read_shutdown(const TableRef& table);
  Logs read_logs(const TableRef& table);
  QemuOptions read_qemu(const TableRef& table);

  Diagnostics& diagnostics_;
  const FileChecker& files_;
  std::filesystem::path base_dir_;
  bool machine_known_ = true;
  bool agent_known_ = true;
};

inline constexpr std::size_t kMaxIdeDisksPc = 4;   // two IDE channels, master and slave
inline constexpr std::size_t kMaxIdeDisksQ35 = 6;  // the ICH9 AHCI controller's six ports

template <class E, std::size_t N>
std::optional<E> ProfileReader::get_enum(const TableRef& table, std::string_view key,
                                         const EnumSpec<E, N>& spec) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  const KeySpec& entry = key_spec(table.section, key);
  if (node->as_string() == nullptr) {
    type_error(*node, table.path(key), expected_type(entry));
    return std::nullopt;
  }
  const std::optional<std::string> text = string_value(*node, table.path(key));
  if (!text) return std::nullopt;
  if (auto value = from_string(spec, *text)) return value;
  std::string message = toml_quote(*text) + " is not " + std::string(spec.noun) + "; use one of " +
                        join_names(entry.values);
  if (auto suggestion = did_you_mean(*text, entry.values)) {
    message += " (did you mean " + toml_quote(*suggestion) + "?)";
  }
  report(*node, table.path(key), std::move(message));
  return std::nullopt;
}

}  // namespace qvm::profile
