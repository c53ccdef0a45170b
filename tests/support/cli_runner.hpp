#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace qvm::testing {

/// What a finished command printed and returned.
struct CommandResult {
  int exit_code = -1;   // -1 if killed by a signal or timed out
  std::string out;
  std::string err;
  std::chrono::milliseconds elapsed{0};
};

/// Runs argv (no shell) with extra environment variables, optional stdin text, and a
/// deadline after which it is killed (exit_code -1). Thread-safe.
CommandResult run_command(const std::vector<std::string>& argv,
                          const std::map<std::string, std::string>& env = {},
                          const std::string& input = "",
                          std::chrono::milliseconds timeout = std::chrono::seconds(120));

/// The qvm binary built with the tests.
std::filesystem::path qvm_binary();

/// Runs `qvm --state-dir STATE ARGS...`.
CommandResult qvm(const std::filesystem::path& state_dir, const std::vector<std::string>& args,
                  std::chrono::seconds timeout = std::chrono::seconds(180),
                  const std::string& input = "");

/// Kills every VM defined under `state_dir` with `qvm kill NAME`, one per folder in vms/,
/// so nothing a test started outlives it even when `qvm ls` would fail. Never throws.
void kill_all_vms(const std::filesystem::path& state_dir);

}  // namespace qvm::testing
