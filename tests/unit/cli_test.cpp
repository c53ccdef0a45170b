#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli.hpp"
#include "support/temp_dir.hpp"

// The command line misused: every case runs qvm::cli::run in this process against an empty
// temporary state directory, so no VM and no QEMU are ever involved. Each checks the exit
// code and the words a user needs to see on stderr, and that qvm said it as one
// "qvm: error: ..." line, never with an exception type or a stack trace.

namespace qvm::cli {
namespace {

namespace fs = std::filesystem;
using qvm::testing::TempDir;

struct Outcome {
  int exit_code = -1;
  std::string out;
  std::string err;
};

constexpr const char* kValidProfile = "name = \"tiny\"\nmemory = \"256MiB\"\n";

class CliTest : public ::testing::Test {
 protected:
  // `qvm --state-dir STATE ARGS...`
  Outcome qvm(std::vector<std::string> args) const {
    args.insert(args.begin(), {"--state-dir", state_dir().string()});
    return qvm_bare(args);
  }

  // `qvm ARGS...`, exactly as given.
  static Outcome qvm_bare(const std::vector<std::string>& args) {
    std::ostringstream out;
    std::ostringstream err;
    Outcome outcome;
    outcome.exit_code = run(args, out, err);
    outcome.out = out.str();
    outcome.err = err.str();
    return outcome;
  }

  fs::path state_dir() const { return dir_ / "state"; }

  // A VM that is defined (its stored profile exists) but has never run.
  void define_vm(const std::string& name) const {
    dir_.write("state/vms/" + name + "/profile.toml",
               "name = \"" + name + "\"\nmemory = \"256MiB\"\n");
  }

  TempDir dir_;
};

// One error line, in qvm's voice; nothing a C++ runtime or CLI11 would print on its own.
void expect_clean_error(const Outcome& outcome) {
  EXPECT_TRUE(outcome.err.starts_with("qvm: error: ")) << outcome.err;
  EXPECT_TRUE(outcome.err.ends_with("\n")) << outcome.err;
  for (const char* leak : {"std::", "exception", "terminate", "what()", "CLI::", "nlohmann",
                           "basic_string", "Aborted", "#0 ", "St9"}) {
    EXPECT_EQ(outcome.err.find(leak), std::string::npos) << "found " << leak << " in " << outcome.err;
  }
  EXPECT_EQ(outcome.out, "");
}

void expect_usage_error(const Outcome& outcome, const std::string& key_text) {
  EXPECT_EQ(outcome.exit_code, kUsage) << outcome.err;
  expect_clean_error(outcome);
  EXPECT_NE(outcome.err.find(key_text), std::string::npos) << outcome.err;
}

TEST_F(CliTest, NoCommandIsAUsageError) {
  expect_usage_error(qvm_bare({}), "(see qvm --help)");
  expect_usage_error(qvm({}), "(see qvm --help)");
}

TEST_F(CliTest, UnknownCommandIsNamed) {
  for (std::vector<std::string> args : {std::vector<std::string>{"frobnicate"}, {"frobnicate", "dev"},
                                        {"--state-dir", "/tmp/x", "frobnicate"}}) {
    const Outcome outcome = qvm_bare(args);
    expect_usage_error(outcome, "unknown command \"frobnicate\" (see qvm --help)");
  }
}

TEST_F(CliTest, UnknownOptionIsNamed) {
  expect_usage_error(qvm({"--frob", "ls"}), "--frob");
  expect_usage_error(qvm({"status", "--frob", "dev"}), "--frob");
  expect_usage_error(qvm({"ls", "--all"}), "--all");
}

TEST_F(CliTest, MissingNameIsAUsageError) {
  for (const char* verb : {"status", "down", "stop", "kill", "pause", "resume", "reboot", "reset",
                           "start", "rm", "logs", "events", "console"}) {
    SCOPED_TRACE(verb);
    expect_usage_error(qvm({verb}), "NAME is required");
  }
}

TEST_F(CliTest, QmpNeedsACommand) {
  expect_usage_error(qvm({"qmp", "dev"}), "COMMAND is required");
}

TEST_F(CliTest, UpWithoutAProfileIsAUsageError) {
  expect_usage_error(qvm({"up"}), "PROFILE is required");
}

TEST_F(CliTest, UpJsonNeedsDryRun) {
  const fs::path profile = dir_.write("tiny.toml", kValidProfile);
  expect_usage_error(qvm({"up", "--json", profile.string()}), "--json: goes with --dry-run");
  EXPECT_FALSE(fs::exists(state_dir() / "vms"));
}

TEST_F(CliTest, UpNameTakesOneProfile) {
  const Outcome outcome = qvm({"up", "--name", "x", "a.toml", "b.toml"});
  expect_usage_error(outcome, "--name: applies to one profile, 2 given");
  EXPECT_FALSE(fs::exists(state_dir() / "vms"));
}

TEST_F(CliTest, UpOfAMissingProfileStartsNothing) {
  const std::string missing = (dir_ / "missing.toml").string();
  expect_usage_error(qvm({"up", missing}),
                     missing + ": cannot read the profile: No such file or directory");
  EXPECT_FALSE(fs::exists(state_dir() / "vms"));
}

TEST_F(CliTest, UpWithAMalformedOverrideShowsWhere) {
  const fs::path profile = dir_.write("tiny.toml", kValidProfile);
  const Outcome outcome = qvm({"up", "--set", "memory", profile.string()});
  EXPECT_EQ(outcome.exit_code, kUsage);
  EXPECT_EQ(outcome.err,
            "qvm: error: --set:1:1: expected KEY=VALUE, such as memory=4GiB, got \"memory\"\n"
            "memory\n"
            "^\n");
}

TEST_F(CliTest, UpTimeoutMustBeAPositiveNumber) {
  const fs::path profile = dir_.write("tiny.toml", kValidProfile);
  expect_usage_error(qvm({"up", "--timeout", "abc", profile.string()}), "--timeout");
  expect_usage_error(qvm({"up", "--timeout", "-1", profile.string()}), "--timeout");
}

TEST_F(CliTest, TimeoutErrorsAreReadable) {
  const fs::path profile = dir_.write("tiny.toml", kValidProfile);
  Outcome outcome = qvm({"up", "--timeout", "abc", profile.string()});
  expect_usage_error(outcome, "");
  EXPECT_EQ(outcome.err, "qvm: error: --timeout: \"abc\" is not a number of seconds (e.g. 30 or 2.5) (see qvm --help)\n");
  outcome = qvm({"up", "--timeout", "0", profile.string()});
  EXPECT_EQ(outcome.err, "qvm: error: --timeout: \"0\" must be more than zero seconds (see qvm --help)\n");
  outcome = qvm({"down", "dev", "--timeout", "-1"});
  EXPECT_EQ(outcome.err, "qvm: error: --timeout: \"-1\" must be zero or more seconds (see qvm --help)\n");
  outcome = qvm({"run", "--timeout", "5s", profile.string(), "--", "true"});
  expect_usage_error(outcome, "\"5s\" is not a number of seconds");
  EXPECT_FALSE(fs::exists(state_dir() / "vms"));
}

TEST_F(CliTest, QmpArgumentsMustBeAJsonObject) {
  for (const char* args : {"[1]", "{bad", "\"text\"", "42"}) {
    SCOPED_TRACE(args);
    expect_usage_error(qvm({"qmp", "dev", "query-status", args}),
                       "ARGS: must be a JSON object, e.g. '{\"device\": \"disk0\"}'");
  }
}

TEST_F(CliTest, ValidateOfAMissingFile) {
  const std::string missing = (dir_ / "missing.toml").string();
  const Outcome outcome = qvm({"validate", missing});
  EXPECT_EQ(outcome.exit_code, kUsage);
  EXPECT_EQ(outcome.err, missing + ": cannot read the profile: No such file or directory\n");
  EXPECT_EQ(outcome.out, "");
}

TEST_F(CliTest, ValidateOfAnInvalidProfilePrintsEveryProblemWithACaret) {
  const fs::path profile = dir_.write("broken.toml", "name = \"b\"\nmemory = \"2XB\"\ncpus = 0\n");
  const Outcome outcome = qvm({"validate", profile.string()});
  EXPECT_EQ(outcome.exit_code, kUsage);
  EXPECT_EQ(outcome.err,
            profile.string() +
                ":2:10: memory: \"2XB\" is not a size; write a whole number and a binary unit (K, "
                "KiB, M, MiB, G, GiB, T or TiB), e.g. \"2GiB\" or \"1536MiB\"\n"
                "memory = \"2XB\"\n"
                "         ^\n" +
                profile.string() + ":3:8: cpus: 0 is out of range; use 1 to 255\n" +
                "cpus = 0\n"
                "       ^\n");
  EXPECT_EQ(outcome.out, "");
}

TEST_F(CliTest, ValidateOfAValidProfileSaysOk) {
  const fs::path profile = dir_.write("tiny.toml", kValidProfile);
  const Outcome outcome = qvm({"validate", profile.string()});
  EXPECT_EQ(outcome.exit_code, kSuccess) << outcome.err;
  EXPECT_EQ(outcome.out, profile.string() + ": OK (tiny)\n");
  EXPECT_EQ(outcome.err, "");
}

TEST_F(CliTest, ValidateOfSeveralFilesFailsIfAnyFails) {
  const fs::path good = dir_.write("tiny.toml", kValidProfile);
  const std::string missing = (dir_ / "missing.toml").string();
  const Outcome outcome = qvm({"validate", good.string(), missing});
  EXPECT_EQ(outcome.exit_code, kUsage);
  EXPECT_EQ(outcome.out, good.string() + ": OK (tiny)\n");
  EXPECT_NE(outcome.err.find(missing + ": cannot read the profile"), std::string::npos);
}

TEST_F(CliTest, CommandsOnAnUndefinedVmFail) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"status", "x"},
                                             {"status", "x", "--json"},
                                             {"down", "x"},
                                             {"stop", "x"},
                                             {"kill", "x"},
                                             {"pause", "x"},
                                             {"start", "x"},
                                             {"rm", "x"},
                                             {"rm", "x", "--force", "--disks"},
                                             {"logs", "x"},
                                             {"events", "x"},
                                             {"qmp", "x", "query-status"},
                                             {"console", "x"},
                                             {"snapshot", "ls", "x"}}) {
    SCOPED_TRACE(args[0] + " " + args[1]);
    const Outcome outcome = qvm(args);
    EXPECT_EQ(outcome.exit_code, kFailure) << outcome.err;
    expect_clean_error(outcome);
    EXPECT_EQ(outcome.err, "qvm: error: no VM named \"x\" (see qvm ls)\n");
  }
  // Asking about a VM must not create the state directory.
  EXPECT_FALSE(fs::exists(state_dir()));
}

TEST_F(CliTest, InvalidVmNameIsAUsageError) {
  for (const char* verb : {"status", "down", "rm", "start", "kill", "logs"}) {
    for (const char* name : {"../x", ".hidden", "a/b", "x y", "_x"}) {
      SCOPED_TRACE(std::string(verb) + " " + name);
      expect_usage_error(qvm({verb, name}),
                         "\"" + std::string(name) +
                             "\" is not a VM name: use 1-63 letters, digits, '.', '_' or '-', "
                             "starting with a letter or digit");
    }
  }
  EXPECT_FALSE(fs::exists(state_dir()));
}

TEST_F(CliTest, SnapshotCreateWithABadNameIsAUsageErrorBeforeAnyLookup) {
  const std::string why =
      "qvm: error: SNAP: \"bad/name\" is not a snapshot name: use 1-63 letters, digits, '.', '_' "
      "or '-', starting with a letter or digit\n";
  Outcome outcome = qvm({"snapshot", "create", "x", "bad/name"});
  expect_usage_error(outcome, "is not a snapshot name");
  EXPECT_EQ(outcome.err, why);
  define_vm("x");
  outcome = qvm({"snapshot", "create", "x", "bad/name"});
  expect_usage_error(outcome, "is not a snapshot name");
  EXPECT_EQ(outcome.err, why);
  EXPECT_EQ(qvm({"snapshot", "ls", "x", "--json"}).out, "{\n  \"current\": null,\n  \"snapshots\": []\n}\n");
}

TEST_F(CliTest, SnapshotOfAnUndefinedVmIsNamed) {
  const Outcome outcome = qvm({"snapshot", "create", "x", "good"});
  EXPECT_EQ(outcome.exit_code, kFailure) << outcome.err;
  expect_clean_error(outcome);
  EXPECT_EQ(outcome.err, "qvm: error: no VM named \"x\" (see qvm ls)\n");
}

TEST_F(CliTest, SnapshotCreateWithABadVmName) {
  expect_usage_error(qvm({"snapshot", "create", "../x", "snap"}), "\"../x\" is not a VM name");
}

TEST_F(CliTest, SnapshotNeedsASubcommand) {
  expect_usage_error(qvm({"snapshot"}), "(see qvm --help)");
  expect_usage_error(qvm({"snapshot", "create", "x"}), "SNAP is required");
}

TEST_F(CliTest, LsOfAnEmptyStateDirectory) {
  Outcome outcome = qvm({"ls"});
  EXPECT_EQ(outcome.exit_code, kSuccess) << outcome.err;
  EXPECT_TRUE(outcome.out.starts_with("NAME ")) << outcome.out;
  EXPECT_EQ(outcome.out.find('\n'), outcome.out.size() - 1) << "only the header: " << outcome.out;
  outcome = qvm({"ls", "--json"});
  EXPECT_EQ(outcome.exit_code, kSuccess) << outcome.err;
  EXPECT_EQ(outcome.out, "[]\n");
}

TEST_F(CliTest, RootHelpListsTheCommands) {
  for (const char* flag : {"--help", "-h"}) {
    SCOPED_TRACE(flag);
    const Outcome outcome = qvm_bare({flag});
    EXPECT_EQ(outcome.exit_code, kSuccess);
    EXPECT_EQ(outcome.err, "");
    EXPECT_NE(outcome.out.find("Usage: qvm"), std::string::npos) << outcome.out;
    for (const char* command : {"up", "down", "validate", "status", "ls", "qmp", "snapshot", "rm"}) {
      EXPECT_TRUE(std::regex_search(outcome.out, std::regex("\n  " + std::string(command) + " ")))
          << command << " missing from:\n"
          << outcome.out;
    }
  }
}

TEST_F(CliTest, CommandHelpShowsItsUsage) {
  Outcome outcome = qvm({"up", "--help"});
  EXPECT_EQ(outcome.exit_code, kSuccess);
  EXPECT_EQ(outcome.err, "");
  EXPECT_NE(outcome.out.find("Usage: qvm up"), std::string::npos) << outcome.out;
  for (const char* option : {"--name", "--set", "--dry-run", "--json", "--timeout", "--foreground"}) {
    EXPECT_NE(outcome.out.find(option), std::string::npos) << option << " in:\n" << outcome.out;
  }
  // Help wins over a missing required argument, and nothing runs.
  outcome = qvm({"down", "--help"});
  EXPECT_EQ(outcome.exit_code, kSuccess);
  EXPECT_NE(outcome.out.find("Usage: qvm down"), std::string::npos) << outcome.out;
  EXPECT_NE(outcome.out.find("--force"), std::string::npos) << outcome.out;
}

TEST_F(CliTest, Version) {
  const Outcome outcome = qvm_bare({"--version"});
  EXPECT_EQ(outcome.exit_code, kSuccess);
  EXPECT_TRUE(std::regex_match(outcome.out, std::regex("qvm [0-9]+\\.[0-9]+\\.[0-9]+\n")))
      << outcome.out;
  EXPECT_EQ(outcome.err, "");
}

TEST_F(CliTest, StateDirNeedsAValue) {
  expect_usage_error(qvm_bare({"--state-dir"}), "--state-dir");
}

}  // namespace
}  // namespace qvm::cli
