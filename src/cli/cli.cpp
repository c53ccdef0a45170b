#include "cli/cli.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <iostream>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/context.hpp"
#include "qvm/error.hpp"
#include "qvm/profile.hpp"

namespace qvm::cli {

void Context::warn(const std::string& message) const { err << "qvm: warning: " << message << "\n"; }

CLI::Validator seconds_check(bool allow_zero) {
  return CLI::Validator(
      [allow_zero](std::string& value) -> std::string {
        double seconds = 0;
        std::size_t used = 0;
        try {
          seconds = std::stod(value, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != value.size() || !std::isfinite(seconds))
          return "\"" + value + "\" is not a number of seconds (e.g. 30 or 2.5)";
        if (seconds < 0 || (seconds == 0 && !allow_zero))
          return "\"" + value + "\" must be " + (allow_zero ? "zero or more" : "more than zero") + " seconds";
        return {};
      },
      "SECONDS");
}

std::shared_ptr<Inventory> Context::inventory() {
  if (!inventory_) inventory_ = Inventory::open(state_dir);
  return inventory_;
}

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  Context ctx(out, err);
  ctx.interactive = &err == &std::cerr && ::isatty(STDERR_FILENO);
  CLI::App app{"qvm launches and manages QEMU virtual machines from TOML profiles, without libvirt.",
               "qvm"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("qvm ") + QVM_VERSION);
  app.add_option("--state-dir", ctx.state_dir,
                 "where VM state lives (default: $QVM_STATE_DIR, $XDG_STATE_HOME/qvm, or "
                 "/var/lib/qvm as root)");
  add_validate_command(app, ctx);
  add_up_command(app, ctx);
  add_lifecycle_commands(app, ctx);
  add_inspection_commands(app, ctx);
  add_console_command(app, ctx);
  add_snapshot_command(app, ctx);
  add_run_command(app, ctx);
  add_ssh_command(app, ctx);
  add_supervise_command(app, ctx);

  // CLI11 would call an unknown command "a missing subcommand"; name it instead.
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--state-dir") {
      ++i;
      continue;
    }
    if (args[i].starts_with("-")) continue;
    try {
      app.get_subcommand(args[i]);
    } catch (const CLI::OptionNotFound&) {
      err << "qvm: error: unknown command \"" << args[i] << "\" (see qvm --help)\n";
      return kUsage;
    }
    break;
  }
  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    return kSuccess;
  } catch (const CLI::CallForAllHelp&) {
    out << app.help("", CLI::AppFormatMode::All);
    return kSuccess;
  } catch (const CLI::CallForVersion&) {
    out << "qvm " << QVM_VERSION << "\n";
    return kSuccess;
  } catch (const CLI::ParseError& e) {
    std::string message = e.what();
    if (message.empty()) message = "invalid command line";
    err << "qvm: error: " << message << " (see qvm --help)\n";
    return kUsage;
  }
  if (!ctx.action) {
    err << "qvm: error: no command given (see qvm --help)\n";
    return kUsage;
  }
  try {
    return ctx.action();
  } catch (const ProfileError& e) {
    err << "qvm: error: " << e.what() << "\n";
    return kUsage;
  } catch (const UsageError& e) {
    err << "qvm: error: " << e.what() << "\n";
    return kUsage;
  } catch (const std::exception& e) {
    err << "qvm: error: " << e.what() << "\n";
    return kFailure;
  }
}

int run(int argc, char** argv) {
  // Everything qvm and its QEMUs create (state, logs, disks, sockets) is for this user only.
  ::umask(077);
  std::vector<std::string> args(argv + std::min(argc, 1), argv + argc);
  return run(args, std::cout, std::cerr);
}

}  // namespace qvm::cli
