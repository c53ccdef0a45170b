#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace qvm::cli {

/// Exit codes of the qvm command (documented in the README).
enum ExitCode : int {
  kSuccess = 0,
  kFailure = 1,  // the operation failed
  kUsage = 2,    // bad command line or profile
  kExecFailed = 125,  // exec/run: qvm could not run the command in the guest
};

/// Runs the qvm command line. Never throws: errors are printed as "qvm: error: ..." on
/// stderr and mapped to an exit code.
int run(int argc, char** argv);

/// Same, with args excluding the program name and explicit streams (for tests).
int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace qvm::cli
