#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "support/cli_runner.hpp"

namespace qvm::testing {

/// Runs argv (no shell) with its stdout on a pseudo-terminal in raw mode (so `out` holds the
/// bytes the program wrote to the terminal, unchanged by the line discipline), `input` on a
/// pipe as stdin, and stderr on a pipe. Killed after `timeout` (exit_code -1).
CommandResult run_on_terminal(const std::vector<std::string>& argv, const std::string& input = "",
                              std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace qvm::testing
