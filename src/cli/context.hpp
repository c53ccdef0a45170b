#pragma once

#include <filesystem>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>

#include "qvm/vm.hpp"

namespace CLI {
class App;
class Validator;
}

namespace qvm::cli {

/// What every subcommand shares: the streams and the global options.
struct Context {
  Context(std::ostream& out_stream, std::ostream& err_stream) : out(out_stream), err(err_stream) {}
  std::ostream& out;
  std::ostream& err;
  std::optional<std::filesystem::path> state_dir;  // --state-dir
  std::function<int()> action;                     // set by the chosen subcommand
  bool interactive = false;                        // stderr is a terminal: show progress

  void warn(const std::string& message) const;
  /// The inventory of the chosen state root, opened on first use.
  std::shared_ptr<Inventory> inventory();

 private:
  std::shared_ptr<Inventory> inventory_;
};

// Each adds one subcommand (or a family) to `app`; its callback sets ctx.action.
void add_validate_command(CLI::App& app, Context& ctx);
void add_up_command(CLI::App& app, Context& ctx);
void add_lifecycle_commands(CLI::App& app, Context& ctx);   // start stop down kill pause ...
void add_inspection_commands(CLI::App& app, Context& ctx);  // ls status logs events qmp
void add_console_command(CLI::App& app, Context& ctx);
void add_snapshot_command(CLI::App& app, Context& ctx);    // snapshot create|ls|revert|rm
void add_run_command(CLI::App& app, Context& ctx);         // run: a throwaway VM for CI
void add_ssh_command(CLI::App& app, Context& ctx);         // ssh through the forward to 22
void add_supervise_command(CLI::App& app, Context& ctx);    // hidden: the detached supervisor

/// Checks a number of seconds (--timeout and friends) and says so in one line when it is not.
CLI::Validator seconds_check(bool allow_zero = false);

/// Prints a start progress message the way `up` and `start` show it.
void show_progress(Context& ctx, const std::string& name, const nlohmann::json& message);
/// The one line `up` and `start` print when a VM is ready.
std::string ready_line(const VmStatus& status);

}  // namespace qvm::cli
