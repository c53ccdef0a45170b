#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "host/host_info.hpp"

namespace qvm::process {

/// Runs argv (argv[0] a path or a name in PATH; never through a shell) to completion with
/// stdin on /dev/null, and returns its exit code with stdout and stderr interleaved (the
/// first `output_limit` bytes). Kills it after `timeout`. Throws qvm::Error if it cannot be
/// started or times out. Thread-safe.
host::ProgramOutput run_program(const std::vector<std::string>& argv,
                                std::chrono::milliseconds timeout = std::chrono::seconds(60),
                                std::size_t output_limit = 1 << 20);

}  // namespace qvm::process
