#pragma once

#include <filesystem>
#include <chrono>
#include <cstdint>
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
  bool out_is_terminal = false;                    // `out` is stdout, and stdout a terminal

  void warn(const std::string& message) const;
  /// The inventory of the chosen state root, opened on first use.
  std::shared_ptr<Inventory> inventory();

 private:
  std::shared_ptr<Inventory> inventory_;
};

// Each adds one subcommand (or a family) to `app`; its callback sets ctx.action.
void add_validate_command(CLI::App& app, Context& ctx);
void add_schema_command(CLI::App& app, Context& ctx);     // schema: the profile's JSON Schema
void add_up_command(CLI::App& app, Context& ctx);
void add_lifecycle_commands(CLI::App& app, Context& ctx);   // start stop down kill pause ...
void add_inspection_commands(CLI::App& app, Context& ctx);  // ls status logs events qmp
void add_console_command(CLI::App& app, Context& ctx);
void add_snapshot_command(CLI::App& app, Context& ctx);    // snapshot create|ls|revert|rm
void add_run_command(CLI::App& app, Context& ctx);         // run: a throwaway VM for CI
void add_ssh_command(CLI::App& app, Context& ctx);         // ssh through the forward to 22
void add_supervise_command(CLI::App& app, Context& ctx);    // hidden: the detached supervisor

/// The longest wait for a VM to be ready or a guest to shut down: one day (as ready.timeout).
inline constexpr std::int64_t kMaxWaitSeconds = 86400;
/// The longest an `exec` or `run` command may run: seven days (poll()'s int milliseconds
/// carry 24 days).
inline constexpr std::int64_t kMaxCommandSeconds = 7 * 86400;

/// Checks a number of seconds (--timeout and friends): a decimal number, more than zero (or
/// zero too, with `allow_zero`) and at most `max_seconds`; else says why in one line naming
/// the accepted range. What it accepts converts to seconds or milliseconds without overflow.
CLI::Validator seconds_check(std::int64_t max_seconds, bool allow_zero = false);

/// A number of seconds that seconds_check accepted, rounded up to whole seconds.
std::chrono::seconds seconds_rounded_up(double seconds);
/// The same, rounded up to whole milliseconds.
std::chrono::milliseconds milliseconds_rounded_up(double seconds);

/// Prints a start progress message the way `up` and `start` show it.
void show_progress(Context& ctx, const std::string& name, const nlohmann::json& message);
/// The one line `up` and `start` print when a VM is ready.
std::string ready_line(const VmStatus& status);

}  // namespace qvm::cli
