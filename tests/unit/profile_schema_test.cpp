#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli.hpp"
#include "profile/schema.hpp"
#include "profile/toml_text.hpp"
#include "qvm/profile.hpp"
#include "qvm/profile_schema.hpp"

// The key table against the reader it drives: what the table says about a key (default,
// range, values, the keys of a section) is what parse_profile does with it. And the JSON
// Schema made from it, against the README's key table.

namespace qvm::profile {
namespace {

// Every file and folder exists: only the keys are under test.
class EverythingExists : public FileChecker {
 public:
  bool exists(const std::filesystem::path&) const override { return true; }
  bool is_directory(const std::filesystem::path&) const override { return true; }
};

// A profile whose only content of note is `line`, in the section `section` ("" = top).
std::string profile_with(std::string_view section, const std::string& line) {
  std::string text = "name = \"t\"\n";
  if (section.empty()) return text + line + "\n";
  const KeySpec& table = key_spec("", section);
  if (table.type == KeyType::table_array) {
    text += "[[" + std::string(section) + "]]\n";
  } else {
    text += "[" + std::string(section) + "]\n";
  }
  if (section == "boot") text += "kernel = \"/vmlinuz\"\n";
  if (section == "disk") text += "path = \"/d.qcow2\"\n";
  if (section == "share") text += "path = \"/srv\"\n";
  return text + line + "\n";
}

Profile parse(const std::string& text) {
  static const EverythingExists files;
  ProfileOptions options;
  options.files = &files;
  return parse_profile(text, "/vm/t.toml", options);
}

// The messages parse_profile throws for `text`; empty if it parses.
std::vector<std::string> problems(const std::string& text) {
  try {
    parse(text);
  } catch (const ProfileError& e) {
    std::vector<std::string> messages;
    for (const auto& d : e.diagnostics()) messages.push_back(d.key + ": " + d.message);
    return messages;
  }
  return {};
}

std::string joined(std::span<const std::string_view> names) {
  std::string text;
  for (std::string_view name : names) text += (text.empty() ? "" : ", ") + std::string(name);
  return text;
}

std::string dotted(const KeySpec& spec) {
  return spec.section.empty() ? std::string(spec.key)
                              : std::string(spec.section) + "." + std::string(spec.key);
}

bool is_section(const KeySpec& spec) {
  return spec.type == KeyType::table || spec.type == KeyType::table_array;
}

TEST(ProfileSchemaTest, EverySectionIsATopLevelTableWithKeysAndNoKeyTwice) {
  std::set<std::string> seen;
  for (const KeySpec& spec : profile_keys()) {
    EXPECT_TRUE(seen.insert(dotted(spec)).second) << dotted(spec) << " is listed twice";
    EXPECT_FALSE(spec.doc.empty()) << dotted(spec) << " has no doc line";
    if (!spec.section.empty()) {
      EXPECT_TRUE(is_section(key_spec("", spec.section))) << dotted(spec);
      EXPECT_FALSE(is_section(spec)) << dotted(spec) << ": tables nest one level only";
    } else if (is_section(spec)) {
      EXPECT_FALSE(section_keys(spec.key).empty()) << spec.key << " has no keys";
    }
  }
  EXPECT_THROW(key_spec("disk", "memory"), std::logic_error);
}

TEST(ProfileSchemaTest, ExpectedTypesAreSpelledAsTheMessagesSayThem) {
  EXPECT_EQ("string (one of q35, pc, microvm)", expected_type(key_spec("", "machine")));
  EXPECT_EQ("string with a unit or integer (MiB)", expected_type(key_spec("", "memory")));
  EXPECT_EQ("table ([ready])", expected_type(key_spec("", "ready")));
  EXPECT_EQ("array of tables ([[disk]])", expected_type(key_spec("", "disk")));
  EXPECT_EQ("array of strings", expected_type(key_spec("net", "forward")));
  EXPECT_EQ("integer", expected_type(key_spec("", "cpus")));
  EXPECT_EQ("boolean", expected_type(key_spec("qemu", "sandbox")));
  EXPECT_EQ("string", expected_type(key_spec("disk", "path")));
}

TEST(ProfileSchemaTest, EveryDefaultIsWhatTheReaderAssumesWithoutTheKey) {
  int checked = 0;
  for (const KeySpec& spec : profile_keys()) {
    if (spec.default_json.empty()) continue;
    const nlohmann::json value = nlohmann::json::parse(spec.default_json);
    const std::string toml =
        value.is_string() ? toml_quote(value.get<std::string>()) : value.dump();
    SCOPED_TRACE(dotted(spec) + " = " + toml);
    EXPECT_EQ(parse(profile_with(spec.section, "")),
              parse(profile_with(spec.section, std::string(spec.key) + " = " + toml)));
    ++checked;
  }
  EXPECT_GE(checked, 20);
}

TEST(ProfileSchemaTest, IntegerRangesAreTheReadersRanges) {
  for (const KeySpec& spec : profile_keys()) {
    if (spec.type != KeyType::integer) continue;
    SCOPED_TRACE(dotted(spec));
    const auto line = [&](std::int64_t v) {
      return std::string(spec.key) + " = " + std::to_string(v);
    };
    EXPECT_TRUE(problems(profile_with(spec.section, line(spec.min))).empty());
    EXPECT_TRUE(problems(profile_with(spec.section, line(spec.max))).empty());
    const std::string range = " is out of range; use " + std::to_string(spec.min) + " to " +
                              std::to_string(spec.max) + std::string(spec.unit);
    EXPECT_EQ(std::vector<std::string>{dotted(spec) + ": " + std::to_string(spec.max + 1) + range},
              problems(profile_with(spec.section, line(spec.max + 1))));
    EXPECT_EQ(std::vector<std::string>{dotted(spec) + ": " + std::to_string(spec.min - 1) + range},
              problems(profile_with(spec.section, line(spec.min - 1))));
  }
}

TEST(ProfileSchemaTest, SizeMaximaAreTheReadersMaxima) {
  for (const KeySpec& spec : profile_keys()) {
    if (spec.type != KeyType::size) continue;
    SCOPED_TRACE(dotted(spec));
    const std::int64_t max_mib = spec.max / (1 << 20);
    const std::string key = std::string(spec.key) + " = ";
    EXPECT_TRUE(problems(profile_with(spec.section, key + std::to_string(max_mib))).empty());
    const std::vector<std::string> over =
        problems(profile_with(spec.section, key + std::to_string(max_mib + 1)));
    ASSERT_EQ(1u, over.size());
    EXPECT_NE(std::string::npos, over[0].find(" is more than the maximum of ")) << over[0];
  }
}

TEST(ProfileSchemaTest, EnumerationValuesAreTheOnesTheReaderLists) {
  for (const KeySpec& spec : profile_keys()) {
    if (spec.type != KeyType::enumeration) continue;
    SCOPED_TRACE(dotted(spec));
    const std::vector<std::string> found =
        problems(profile_with(spec.section, std::string(spec.key) + " = \"zzzz\""));
    ASSERT_EQ(1u, found.size());
    EXPECT_NE(std::string::npos, found[0].find("; use one of " + joined(spec.values))) << found[0];
  }
}

TEST(ProfileSchemaTest, UnknownKeysListTheSectionsKeysInTableOrder) {
  for (std::string_view section :
       {"", "ready", "boot", "disk", "net", "cloud_init", "share", "shutdown", "logs", "qemu"}) {
    SCOPED_TRACE(std::string(section));
    const std::vector<std::string_view> keys = section_keys(section);
    const std::string where = section.empty() ? ""
                              : key_spec("", section).type == KeyType::table_array
                                  ? std::string(section) + "[0]."
                                  : std::string(section) + ".";
    EXPECT_EQ(std::vector<std::string>{where +
                                       "zzzzzzzz: unknown key \"zzzzzzzz\"; valid keys "
                                       "here: " +
                                       joined(keys)},
              problems(profile_with(section, "zzzzzzzz = 1")));
    // A key with one letter too many is answered with that key.
    for (std::string_view key : keys) {
      if (is_section(key_spec(section, key))) continue;
      const std::string typo = "q" + std::string(key);
      const std::vector<std::string> found = problems(profile_with(section, typo + " = 1"));
      ASSERT_EQ(1u, found.size()) << typo;
      EXPECT_NE(std::string::npos, found[0].find("did you mean \"" + std::string(key) + "\"?"))
          << found[0];
    }
  }
}

// Calls `visit` for every object schema in `schema`, with its JSON pointer.
void each_object(const nlohmann::json& schema, const std::string& where,
                 const std::function<void(const nlohmann::json&, const std::string&)>& visit) {
  if (schema.value("type", nlohmann::json()) == "object") visit(schema, where);
  if (schema.contains("properties")) {
    for (const auto& [key, property] : schema["properties"].items()) {
      each_object(property, where + "/properties/" + key, visit);
    }
  }
  if (schema.contains("items")) each_object(schema["items"], where + "/items", visit);
}

TEST(ProfileSchemaTest, SchemaCommandPrintsADraft202012SchemaClosedEverywhere) {
  std::ostringstream out;
  std::ostringstream err;
  ASSERT_EQ(0, cli::run({"schema"}, out, err));
  EXPECT_EQ("", err.str());
  const nlohmann::json schema = nlohmann::json::parse(out.str());  // throws if not JSON
  EXPECT_EQ("https://json-schema.org/draft/2020-12/schema", schema.at("$schema"));
  EXPECT_EQ(profile_json_schema(), schema);
  int objects = 0;
  each_object(schema, "", [&](const nlohmann::json& object, const std::string& where) {
    ++objects;
    EXPECT_EQ(false, object.value("additionalProperties", nlohmann::json())) << where;
    for (const auto& [key, property] : object.at("properties").items()) {
      EXPECT_TRUE(property.contains("description")) << where << "/" << key;
      EXPECT_TRUE(property.contains("type")) << where << "/" << key;
    }
  });
  EXPECT_EQ(10, objects);  // the top level and its nine tables
  const nlohmann::json& top = schema.at("properties");
  EXPECT_EQ((nlohmann::json{"q35", "pc", "microvm"}), top.at("machine").at("enum"));
  EXPECT_EQ("q35", top.at("machine").at("default"));
  EXPECT_EQ(1, top.at("cpus").at("minimum"));
  EXPECT_EQ(255, top.at("cpus").at("maximum"));
  EXPECT_EQ((nlohmann::json{"path"}), top.at("disk").at("items").at("required"));
}

// The keys of the README's Profiles table: `name`, `[ready]`, `ready.serial`, `[[disk]]`, ...
std::set<std::string> readme_keys() {
  std::ifstream file(std::string(QVM_SOURCE_DIR) + "/README.md");
  std::set<std::string> keys;
  std::string line;
  bool in_profiles = false;
  const std::regex row(R"(^\| `([^`]+)` \|)");
  while (std::getline(file, line)) {
    if (line.starts_with("## ")) in_profiles = line == "## Profiles";
    std::smatch match;
    if (in_profiles && std::regex_search(line, match, row)) keys.insert(match[1]);
  }
  return keys;
}

// The same spelling of the schema's keys.
std::set<std::string> schema_keys() {
  std::set<std::string> keys;
  const nlohmann::json schema = profile_json_schema();
  for (const auto& [key, property] : schema.at("properties").items()) {
    const nlohmann::json* table = nullptr;
    if (property.at("type") == "object") {
      keys.insert("[" + key + "]");
      table = &property;
    } else if (property.at("type") == "array" && property.at("items").contains("properties")) {
      keys.insert("[[" + key + "]]");
      table = &property.at("items");
    } else {
      keys.insert(key);
    }
    if (table == nullptr) continue;
    for (const auto& [inner, unused] : table->at("properties").items()) {
      keys.insert(key + "." + inner);
    }
  }
  return keys;
}

TEST(ProfileSchemaTest, ReadmeKeyTableListsExactlyTheSchemasKeys) {
  const std::set<std::string> readme = readme_keys();
  const std::set<std::string> schema = schema_keys();
  ASSERT_GT(readme.size(), 40u) << "the README's Profiles table was not found";
  for (const std::string& key : schema) {
    EXPECT_TRUE(readme.contains(key)) << key << " is in the schema but not in README.md";
  }
  for (const std::string& key : readme) {
    EXPECT_TRUE(schema.contains(key)) << key << " is in README.md but not in the schema";
  }
}

}  // namespace
}  // namespace qvm::profile
