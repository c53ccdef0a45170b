#include "cli/cli.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/context.hpp"
#include "qvm/error.hpp"
#include "qvm/profile.hpp"

namespace qvm::cli {

void Context::warn(const std::string& message) const { err << "qvm: warning: " << message << "\n"; }

CLI::Validator seconds_check(std::int64_t max_seconds, bool allow_zero) {
  return CLI::Validator(
      [max_seconds, allow_zero](std::string& value) -> std::string {
        // from_chars, unlike stod, takes no hex, no leading blanks and no locale.
        double seconds = 0;
        const char* end = value.data() + value.size();
        const auto [stop, error] = std::from_chars(value.data(), end, seconds);
        const bool number = stop == end && !value.empty();
        if (!number || (error == std::errc() && !std::isfinite(seconds)) ||
            (error != std::errc() && error != std::errc::result_out_of_range)) {
          return "\"" + value + "\" is not a number of seconds (e.g. 30 or 2.5)";
        }
        const std::string range =
            "\"" + value + "\" is out of range: use " + (allow_zero ? "0 to " : "more than 0 and at most ") +
            std::to_string(max_seconds) + " seconds (" +
            (max_seconds == 86400 ? std::string("one day") : std::to_string(max_seconds / 86400) + " days") + ")";
        if (error == std::errc::result_out_of_range) return range;
        if (seconds < 0 || (seconds == 0 && !allow_zero))
          return "\"" + value + "\" must be " + (allow_zero ? "zero or more" : "more than zero") + " seconds";
        // Beyond this, deadlines (now + timeout in nanoseconds) and poll()'s int milliseconds
        // would overflow further in.
        if (seconds > static_cast<double>(max_seconds)) return range;
        return {};
      },
      "SECONDS");
}

std::chrono::seconds seconds_rounded_up(double seconds) {
  return std::chrono::seconds(static_cast<std::int64_t>(std::ceil(seconds)));
}

std::chrono::milliseconds milliseconds_rounded_up(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(seconds * 1000)));
}

namespace {

std::string file_kind(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "something else";
}

// A state root that exists must be a folder (or a symlink to one): anything else would be
// written through, or a later mkdir would fail deep inside a command. `source` names where
// the path came from, for the message.
void check_state_root(const std::filesystem::path& root, const std::string& source) {
  if (root.empty()) return;
  const std::string fix = "; pass a directory (qvm creates it if it does not exist)";
  struct stat target {};
  if (::stat(root.c_str(), &target) == 0) {
    if (S_ISDIR(target.st_mode)) return;
    struct stat entry {};
    const bool through_link = ::lstat(root.c_str(), &entry) == 0 && S_ISLNK(entry.st_mode);
    throw UsageError(source + " " + root.string() + " is " + (through_link ? "a symlink to " : "") +
                     file_kind(target.st_mode) + ", not a directory" + fix);
  }
  const int error = errno;
  struct stat entry {};
  if (error == ENOENT && ::lstat(root.c_str(), &entry) == 0 && S_ISLNK(entry.st_mode)) {
    throw UsageError(source + " " + root.string() + " is a symlink to nothing, not a directory" + fix);
  }
  if (error == ENOTDIR) {
    // Some folder on the way is something else: name it.
    std::filesystem::path part = root;
    while (part.has_relative_path() && part != part.parent_path()) {
      part = part.parent_path();
      struct stat on_the_way {};
      if (::stat(part.c_str(), &on_the_way) == 0 && !S_ISDIR(on_the_way.st_mode)) {
        throw UsageError(source + " " + root.string() + " lies inside " + part.string() + ", which is " +
                         file_kind(on_the_way.st_mode) + ", not a directory" + fix);
      }
    }
    throw UsageError(source + " " + root.string() + " is not a directory" + fix);
  }
}

}  // namespace

std::shared_ptr<Inventory> Context::inventory() {
  if (!inventory_) inventory_ = Inventory::open(state_dir);
  return inventory_;
}

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  Context ctx(out, err);
  ctx.interactive = &err == &std::cerr && ::isatty(STDERR_FILENO);
  ctx.out_is_terminal = &out == &std::cout && ::isatty(STDOUT_FILENO);
  CLI::App app{"qvm launches and manages QEMU virtual machines from TOML profiles, without libvirt.",
               "qvm"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("qvm ") + QVM_VERSION);
  app.add_option("--state-dir", ctx.state_dir,
                 "where VM state lives (default: $QVM_STATE_DIR, $XDG_STATE_HOME/qvm, or "
                 "/var/lib/qvm as root)");
  add_validate_command(app, ctx);
  add_schema_command(app, ctx);
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
    // Before any command creates or writes anything under it.
    if (ctx.state_dir && !ctx.state_dir->empty()) {
      check_state_root(*ctx.state_dir, "--state-dir");
    } else if (const char* from_env = std::getenv("QVM_STATE_DIR")) {
      check_state_root(from_env, "QVM_STATE_DIR");
    }
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
