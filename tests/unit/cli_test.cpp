#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli.hpp"
#include "support/cli_runner.hpp"
#include "support/temp_dir.hpp"
#include "support/terminal_runner.hpp"

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

// Every command, as a user may type it with a state directory given.
std::vector<std::vector<std::string>> every_command(const std::string& profile) {
  return {{"ls"},
          {"ls", "--json"},
          {"status", "x"},
          {"logs", "x"},
          {"logs", "-f", "x"},
          {"events", "x"},
          {"console", "x"},
          {"qmp", "x", "query-status"},
          {"start", "x"},
          {"down", "x"},
          {"stop", "x"},
          {"kill", "x"},
          {"pause", "x"},
          {"resume", "x"},
          {"reboot", "x"},
          {"reset", "x"},
          {"exec", "x", "--", "true"},
          {"rm", "x", "--force", "--disks"},
          {"snapshot", "ls", "x"},
          {"snapshot", "create", "x", "s"},
          {"snapshot", "revert", "x", "s"},
          {"snapshot", "rm", "x", "s"},
          {"ssh", "x"},
          {"validate", profile},
          {"up", profile},
          {"up", "--dry-run", profile},
          {"run", "--rm", profile, "--", "true"}};
}

// A state directory that exists but is no directory: refused by path, with the fix, before
// any command looks at it, and the file is left as it was.
TEST_F(CliTest, StateDirThatIsNotADirectoryIsAUsageError) {
  const fs::path profile = dir_.write("tiny.toml", kValidProfile);
  const fs::path file = dir_.write("a-file", "precious\n");
  const fs::path to_file = dir_ / "link-to-file";
  fs::create_symlink(file, to_file);
  const fs::path dangling = dir_ / "dangling";
  fs::create_symlink(dir_ / "nowhere", dangling);
  const fs::path fifo = dir_ / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string fix = ", not a directory; pass a directory (qvm creates it if it does not exist)\n";
  const std::vector<std::pair<fs::path, std::string>> cases = {
      {file, file.string() + " is a regular file"},
      {to_file, to_file.string() + " is a symlink to a regular file"},
      {dangling, dangling.string() + " is a symlink to nothing"},
      {fifo, fifo.string() + " is a FIFO"},
      {"/dev/null", "/dev/null is a character device"},
      {file / "state", (file / "state").string() + " lies inside " + file.string() + ", which is a regular file"},
  };
  const auto before = [&] {
    std::vector<fs::path> entries;
    for (const auto& entry : fs::recursive_directory_iterator(dir_.path())) entries.push_back(entry.path());
    std::sort(entries.begin(), entries.end());
    return entries;
  }();
  for (const auto& [path, what] : cases) {
    for (const auto& args : every_command(profile.string())) {
      SCOPED_TRACE(path.string() + ": " + args[0] + (args.size() > 1 ? " " + args[1] : ""));
      std::vector<std::string> line = {"--state-dir", path.string()};
      line.insert(line.end(), args.begin(), args.end());
      const Outcome outcome = qvm_bare(line);
      EXPECT_EQ(outcome.exit_code, kUsage) << outcome.err;
      EXPECT_EQ(outcome.err, "qvm: error: --state-dir " + what + fix);
      EXPECT_EQ(outcome.out, "");
    }
  }
  std::ifstream in(file);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "precious\n");
  std::vector<fs::path> after;
  for (const auto& entry : fs::recursive_directory_iterator(dir_.path())) after.push_back(entry.path());
  std::sort(after.begin(), after.end());
  EXPECT_EQ(after, before);
}

TEST_F(CliTest, StateDirFromTheEnvironmentThatIsAFileIsNamed) {
  const fs::path file = dir_.write("a-file", "precious\n");
  ASSERT_EQ(::setenv("QVM_STATE_DIR", file.c_str(), 1), 0);
  const Outcome outcome = qvm_bare({"ls"});
  ::unsetenv("QVM_STATE_DIR");
  EXPECT_EQ(outcome.exit_code, kUsage) << outcome.err;
  EXPECT_EQ(outcome.err, "qvm: error: QVM_STATE_DIR " + file.string() +
                             " is a regular file, not a directory; pass a directory (qvm creates it if it "
                             "does not exist)\n");
}

TEST_F(CliTest, StateDirThatIsADirectoryOrALinkToOneWorks) {
  fs::create_directories(dir_ / "real");
  fs::create_symlink(dir_ / "real", dir_ / "link");
  for (const fs::path& root : {dir_ / "real", dir_ / "link", dir_ / "not-yet"}) {
    const Outcome outcome = qvm_bare({"--state-dir", root.string(), "ls", "--json"});
    EXPECT_EQ(outcome.exit_code, kSuccess) << outcome.err;
    EXPECT_EQ(outcome.out, "[]\n");
  }
}

// Every option that takes a number of seconds, the commands it belongs to, and the range
// it accepts.
struct TimeoutOption {
  std::vector<std::string> args;  // the command line before the option
  std::string option;
  std::vector<std::string> after;  // the rest of the command line
  std::string range;
};

std::vector<TimeoutOption> every_timeout(const std::string& missing_profile) {
  const std::string wait = "more than 0 and at most 86400 seconds (one day)";
  const std::string command = "more than 0 and at most 604800 seconds (7 days)";
  return {{{"up"}, "--timeout", {missing_profile}, wait},
          {{"start", "x"}, "--timeout", {}, wait},
          {{"down", "x"}, "--timeout", {}, "0 to 86400 seconds (one day)"},
          {{"stop", "x"}, "--timeout", {}, "0 to 86400 seconds (one day)"},
          {{"exec", "x"}, "--timeout", {"--", "true"}, command},
          {{"run", missing_profile}, "--timeout", {"--", "true"}, command},
          {{"run", missing_profile}, "--boot-timeout", {"--", "true"}, wait}};
}

// Too large for the arithmetic behind the option (seconds to nanoseconds for a deadline,
// milliseconds for poll()) or for any sensible wait: refused by name and range before the
// command runs (a profile that does not exist would otherwise be the error).
TEST_F(CliTest, TimeoutsThatDoNotFitAreUsageErrors) {
  const std::string missing = (dir_ / "missing.toml").string();
  for (const auto& timeout : every_timeout(missing)) {
    const bool command = timeout.range.find("604800") != std::string::npos;
    for (const char* value : {"99999999999999999999", "9223372036854775807", "1e9", "1e400", "-1e400",
                              command ? "604801" : "86401", command ? "604800.5" : "86400.001"}) {
      SCOPED_TRACE(timeout.args[0] + " " + timeout.option + " " + value);
      std::vector<std::string> args = timeout.args;
      args.insert(args.end(), {timeout.option, value});
      args.insert(args.end(), timeout.after.begin(), timeout.after.end());
      const Outcome outcome = qvm(args);
      EXPECT_EQ(outcome.exit_code, kUsage);
      EXPECT_EQ(outcome.err, "qvm: error: " + timeout.option + ": \"" + value + "\" is out of range: use " +
                                 timeout.range + " (see qvm --help)\n");
    }
    // An empty value: CLI11 takes the next word as the value, or says one is missing.
    {
      std::vector<std::string> args = timeout.args;
      args.insert(args.end(), {timeout.option + "="});
      args.insert(args.end(), timeout.after.begin(), timeout.after.end());
      const Outcome outcome = qvm(args);
      EXPECT_EQ(outcome.exit_code, kUsage);
      EXPECT_TRUE(outcome.err.starts_with("qvm: error: " + timeout.option + ": ")) << outcome.err;
    }
    for (const char* value : {"10s", "inf", "nan", "0x10", " 5", "5 ", "1,5", "--"}) {
      SCOPED_TRACE(timeout.args[0] + " " + timeout.option + " [" + value + "]");
      std::vector<std::string> args = timeout.args;
      args.insert(args.end(), {timeout.option + "=" + value});
      args.insert(args.end(), timeout.after.begin(), timeout.after.end());
      const Outcome outcome = qvm(args);
      EXPECT_EQ(outcome.exit_code, kUsage);
      EXPECT_EQ(outcome.err, "qvm: error: " + timeout.option + ": \"" + value +
                                 "\" is not a number of seconds (e.g. 30 or 2.5) (see qvm --help)\n");
    }
  }
  EXPECT_FALSE(fs::exists(state_dir()));
}

// The largest value of each range (and a fraction) still reaches the command, which then
// finds no VM or no profile.
TEST_F(CliTest, TimeoutsAtTheEndsOfTheirRangeAreAccepted) {
  const std::string missing = (dir_ / "missing.toml").string();
  for (const auto& timeout : every_timeout(missing)) {
    const bool command = timeout.range.find("604800") != std::string::npos;
    for (const char* value : {command ? "604800" : "86400", "0.001", "2.5", "1e3"}) {
      SCOPED_TRACE(timeout.args[0] + " " + timeout.option + " " + value);
      std::vector<std::string> args = timeout.args;
      args.insert(args.end(), {timeout.option, value});
      args.insert(args.end(), timeout.after.begin(), timeout.after.end());
      const Outcome outcome = qvm(args);
      EXPECT_TRUE(outcome.err.find("no VM named \"x\"") != std::string::npos ||
                  outcome.err.find("cannot read the profile") != std::string::npos)
          << outcome.err;
    }
  }
  const Outcome zero = qvm({"down", "x", "--timeout", "0"});
  EXPECT_EQ(zero.err, "qvm: error: no VM named \"x\" (see qvm ls)\n");
}

// `qvm logs` with its stdout on a terminal: the guest's escape sequences are shown, not
// obeyed; with --raw, or into a pipe, they pass byte for byte.
class CliTerminalTest : public CliTest {
 protected:
  std::vector<std::string> qvm_argv(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {testing::qvm_binary().string(), "--state-dir", state_dir().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
};

constexpr const char* kHostileLog =
    "login: \x1b[2J\x1b]0;owned\x07\x1b[31mred\x1b[0m \xc2\x9b" "6n caf\xc3\xa9 \xe2\x82\xac\r\n";
constexpr const char* kHostileLogShown =
    "login: ^[[2J^[]0;owned^G^[[31mred^[[0m \\xc2\\x9b6n caf\xc3\xa9 \xe2\x82\xac\r\n";

TEST_F(CliTerminalTest, LogsOnATerminalShowEscapeSequences) {
  define_vm("x");
  dir_.write("state/vms/x/serial.log", kHostileLog);
  dir_.write("state/vms/x/qemu.log", "qemu: \x1b[5mblink\n");
  for (const std::vector<std::string>& args : {std::vector<std::string>{"logs", "x"}, {"logs", "-f", "x"}}) {
    SCOPED_TRACE(args[1]);
    const auto shown = testing::run_on_terminal(qvm_argv(args));
    EXPECT_EQ(shown.exit_code, 0) << shown.err;
    EXPECT_EQ(shown.out, kHostileLogShown);
    EXPECT_EQ(shown.out.find('\x1b'), std::string::npos);
  }
  EXPECT_EQ(testing::run_on_terminal(qvm_argv({"logs", "--qemu", "x"})).out, "qemu: ^[[5mblink\n");
}

TEST_F(CliTerminalTest, LogsWithRawOrIntoAPipeKeepTheBytes) {
  define_vm("x");
  dir_.write("state/vms/x/serial.log", kHostileLog);
  for (const std::vector<std::string>& args : {std::vector<std::string>{"logs", "--raw", "x"}, {"logs", "-f", "--raw", "x"}}) {
    SCOPED_TRACE(args[1]);
    const auto raw = testing::run_on_terminal(qvm_argv(args));
    EXPECT_EQ(raw.exit_code, 0) << raw.err;
    EXPECT_EQ(raw.out, kHostileLog);
    const auto piped = testing::run_command(qvm_argv(args));
    EXPECT_EQ(piped.exit_code, 0) << piped.err;
    EXPECT_EQ(piped.out, kHostileLog);
  }
  const auto piped = testing::run_command(qvm_argv({"logs", "x"}));
  EXPECT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(piped.out, kHostileLog);
}

// The log is read in 64 KiB pieces: a character across the cut is shown whole, and a
// sequence cut off by the end of the log is shown as its bytes.
TEST_F(CliTerminalTest, LogsOnATerminalKeepCharactersAcrossReads) {
  define_vm("x");
  std::string log(65535, 'a');
  log += "\xe2\x82\xac\n\xf0\x9f";
  dir_.write("state/vms/x/serial.log", log);
  const auto shown = testing::run_on_terminal(qvm_argv({"logs", "x"}));
  EXPECT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_EQ(shown.out, std::string(65535, 'a') + "\xe2\x82\xac\n\\xf0\\x9f");
}

TEST_F(CliTest, LogsAndConsoleOfferRaw) {
  for (const char* command : {"logs", "console"}) {
    const Outcome outcome = qvm({command, "--help"});
    EXPECT_NE(outcome.out.find("--raw"), std::string::npos) << outcome.out;
  }
}

}  // namespace
}  // namespace qvm::cli
