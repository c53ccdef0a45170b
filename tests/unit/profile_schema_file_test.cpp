#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "support/cli_runner.hpp"
#include "support/temp_dir.hpp"

// `qvm schema` as an editor uses it: the printed schema, checked by a real JSON Schema
// implementation (python3-jsonschema's Draft202012Validator, profiles read with tomllib;
// tests/support/validate_profiles.py), accepts every bundled profile and refuses a typo'd
// key and a value outside an enumeration. No QEMU involved.

namespace qvm {
namespace {

namespace fs = std::filesystem;
using qvm::testing::CommandResult;
using qvm::testing::run_command;
using qvm::testing::TempDir;

class ProfileSchemaFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const CommandResult printed = run_command({testing::qvm_binary().string(), "schema"});
    ASSERT_EQ(0, printed.exit_code) << printed.err;
    schema_ = dir_.write("profile.schema.json", printed.out);
  }

  // validate_profiles.py SCHEMA FILES...
  CommandResult validate(const std::vector<std::string>& files) const {
    std::vector<std::string> argv{
        "python3", std::string(QVM_SOURCE_DIR) + "/tests/support/validate_profiles.py",
        schema_.string()};
    argv.insert(argv.end(), files.begin(), files.end());
    return run_command(argv);
  }

  TempDir dir_;
  fs::path schema_;
};

TEST_F(ProfileSchemaFileTest, EveryBundledProfileIsValid) {
  std::vector<std::string> profiles;
  for (const auto& entry : fs::directory_iterator(std::string(QVM_SOURCE_DIR) + "/profiles")) {
    if (entry.path().extension() == ".toml") profiles.push_back(entry.path().string());
  }
  std::sort(profiles.begin(), profiles.end());
  ASSERT_GE(profiles.size(), 6u);
  const CommandResult result = validate(profiles);
  EXPECT_EQ(0, result.exit_code) << result.out << result.err;
  std::string expected;
  for (const std::string& profile : profiles) expected += profile + ": OK\n";
  EXPECT_EQ(expected, result.out);
}

TEST_F(ProfileSchemaFileTest, ATypoedKeyIsRejected) {
  const fs::path typo = dir_.write("typo.toml", "name = \"t\"\nmemroy = \"1GiB\"\n");
  const CommandResult result = validate({typo.string()});
  EXPECT_EQ(1, result.exit_code) << result.err;
  EXPECT_EQ(typo.string() +
                ": INVALID: (top level): Additional properties are not allowed ('memroy' was "
                "unexpected)\n",
            result.out);
}

TEST_F(ProfileSchemaFileTest, ATypoedKeyInsideAnArrayOfTablesIsRejected) {
  const fs::path typo =
      dir_.write("typo.toml", "name = \"t\"\n[[disk]]\npath = \"d.qcow2\"\nbuss = \"ide\"\n");
  const CommandResult result = validate({typo.string()});
  EXPECT_EQ(1, result.exit_code) << result.err;
  EXPECT_EQ(typo.string() +
                ": INVALID: disk.0: Additional properties are not allowed ('buss' was "
                "unexpected)\n",
            result.out);
}

TEST_F(ProfileSchemaFileTest, AValueOutsideAnEnumerationIsRejected) {
  const fs::path wrong = dir_.write("wrong.toml", "name = \"t\"\nmachine = \"q36\"\n");
  const CommandResult result = validate({wrong.string()});
  EXPECT_EQ(1, result.exit_code) << result.err;
  EXPECT_EQ(wrong.string() + ": INVALID: machine: 'q36' is not one of ['q35', 'pc', 'microvm']\n",
            result.out);
}

TEST_F(ProfileSchemaFileTest, AnIntegerOutOfRangeIsRejected) {
  const fs::path wrong = dir_.write("wrong.toml", "name = \"t\"\n[shutdown]\ntimeout = 0\n");
  const CommandResult result = validate({wrong.string()});
  EXPECT_EQ(1, result.exit_code) << result.err;
  EXPECT_EQ(wrong.string() + ": INVALID: shutdown.timeout: 0 is less than the minimum of 1\n",
            result.out);
}

}  // namespace
}  // namespace qvm
