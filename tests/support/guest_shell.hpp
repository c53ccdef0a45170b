#pragma once

#include <chrono>
#include <filesystem>
#include <string>

namespace qvm::testing {

/// Runs `command` in the test guest's serial shell through the console socket and returns
/// what it printed, up to a completion marker carrying its exit status (in `status`).
/// Throws std::runtime_error if the socket refuses or the marker does not come in time.
std::string run_in_guest(const std::filesystem::path& console_socket, const std::string& command,
                         std::chrono::seconds timeout = std::chrono::seconds(60), int* status = nullptr);

}  // namespace qvm::testing
