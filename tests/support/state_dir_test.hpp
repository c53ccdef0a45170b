#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/cli_runner.hpp"
#include "support/temp_dir.hpp"

namespace qvm::testing {

/// An integration test that drives the real `qvm` binary in a state folder of its own, and
/// kills every VM it defined when it ends, whatever happened.
class StateDirTest : public ::testing::Test {
 protected:
  void TearDown() override { kill_all_vms(state_); }

  /// `qvm --state-dir STATE ARGS...`.
  CommandResult qvm(const std::vector<std::string>& args,
                    std::chrono::seconds timeout = std::chrono::seconds(240)) {
    return testing::qvm(state_, args, timeout);
  }

  /// `qvm status NAME --json`; {} if it printed nothing (no such VM).
  nlohmann::json status(const std::string& name) {
    const CommandResult result = qvm({"status", name, "--json"});
    return nlohmann::json::parse(result.out.empty() ? "{}" : result.out);
  }

  TempDir dir_;
  std::filesystem::path state_ = dir_ / "state";
};

}  // namespace qvm::testing
