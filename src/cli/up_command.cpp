#include <CLI/CLI.hpp>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <ostream>
#include <thread>

#include "cli/cli.hpp"
#include "cli/context.hpp"
#include "qvm/error.hpp"
#include "qvm/profile.hpp"

namespace qvm::cli {
namespace {

struct UpOptions {
  std::vector<std::string> profiles;
  std::optional<std::string> name;
  std::vector<std::string> overrides;
  bool foreground = false;
  bool dry_run = false;
  bool json = false;
  std::optional<double> timeout;
};

int dry_run(Context& ctx, const std::vector<Profile>& profiles, bool json) {
  for (const Profile& profile : profiles) {
    const DryRun command = ctx.inventory()->dry_run(profile);
    for (const auto& warning : command.warnings) ctx.warn(warning);
    ctx.out << (json ? nlohmann::json(command.argv).dump() : command.shell) << "\n";
  }
  return kSuccess;
}

StartOptions start_options(Context& ctx, const UpOptions& options, const std::string& name,
                           std::mutex& output) {
  StartOptions start;
  start.foreground = options.foreground;
  if (options.timeout) start.ready_timeout = seconds_rounded_up(*options.timeout);
  start.on_progress = [&ctx, name, &output](const nlohmann::json& message) {
    std::lock_guard guard(output);
    show_progress(ctx, name, message);
    // In the foreground the VM runs on after "ready"; say so once.
    if (message.value("phase", "") == "ready") ctx.out.flush();
  };
  return start;
}

int up(Context& ctx, const UpOptions& options) {
  // Every profile is validated before anything starts: a typo never leaves half the VMs up.
  std::vector<Profile> profiles;
  std::vector<std::string> problems;
  for (const auto& file : options.profiles) {
    try {
      profiles.push_back(load_profile(file, {options.overrides, options.name, nullptr}));
    } catch (const ProfileError& e) {
      problems.push_back(e.what());
    }
  }
  if (!problems.empty()) {
    for (const auto& problem : problems) ctx.err << "qvm: error: " << problem << "\n";
    return kUsage;
  }
  for (std::size_t i = 0; i < profiles.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (profiles[i].name == profiles[j].name) {
        throw UsageError("two profiles name the same VM \"" + profiles[i].name + "\"; use --name or different names");
      }
    }
  }
  if (options.dry_run) return dry_run(ctx, profiles, options.json);
  if (options.foreground && profiles.size() > 1) {
    throw UsageError("--foreground supervises one VM; " + std::to_string(profiles.size()) + " profiles given");
  }

  auto inventory = ctx.inventory();
  std::mutex output;
  auto bring_up = [&](const Profile& profile) -> int {
    try {
      auto started = std::chrono::steady_clock::now();
      Vm vm = inventory->up(profile, start_options(ctx, options, profile.name, output));
      VmStatus status = vm.status();
      std::lock_guard guard(output);
      if (options.foreground) {
        ctx.out << profile.name << ": " << to_string(status.state) << " (" << status.reason << ")\n";
        return status.state == VmState::crashed ? kFailure : kSuccess;
      }
      auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      char took[32];
      std::snprintf(took, sizeof took, "%.1f", elapsed);
      ctx.out << ready_line(status) << " in " << took << " s\n";
      return kSuccess;
    } catch (const ProfileError&) {
      throw;
    } catch (const std::exception& e) {
      std::lock_guard guard(output);
      if (ctx.interactive) ctx.err << "\r\033[K";
      ctx.err << "qvm: error: " << profile.name << ": " << e.what() << "\n";
      return kFailure;
    }
  };
  if (profiles.size() == 1) return bring_up(profiles.front());
  // Several VMs start in parallel; each reports on its own line.
  std::vector<int> results(profiles.size(), kSuccess);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < profiles.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = bring_up(profiles[i]); });
  }
  for (auto& thread : threads) thread.join();
  return *std::max_element(results.begin(), results.end());
}

}  // namespace

std::string ready_line(const VmStatus& status) {
  std::string line = status.name + ": " + std::string(to_string(status.state));
  if (status.pid) line += " (QEMU pid " + std::to_string(*status.pid) + ", " + status.accel + ")";
  return line + ", ready";
}

void show_progress(Context& ctx, const std::string& name, const nlohmann::json& message) {
  const std::string phase = message.value("phase", "");
  if (phase == "warning") {
    if (ctx.interactive) ctx.err << "\r\033[K";
    ctx.warn(name + ": " + message.value("message", ""));
    return;
  }
  if (!ctx.interactive) return;
  if (phase == "starting") {
    ctx.err << "\r\033[K" << name << ": starting QEMU..." << std::flush;
  } else if (phase == "qmp-ready") {
    ctx.err << "\r\033[K" << name << ": QEMU is up (pid " << message.value("pid", 0) << ")" << std::flush;
  } else if (phase == "waiting") {
    ctx.err << "\r\033[K" << name << ": waiting for " << message.value("what", "readiness") << " (up to "
            << message.value("timeout", 0) << " s)..." << std::flush;
  } else if (phase == "ready" || phase == "failed") {
    ctx.err << "\r\033[K" << std::flush;
  }
}

void add_up_command(CLI::App& app, Context& ctx) {
  auto options = std::make_shared<UpOptions>();
  auto* cmd = app.add_subcommand("up", "define and start VMs from profiles; return when ready");
  cmd->add_option("PROFILE", options->profiles, "profile files (several start in parallel)")->required();
  cmd->add_option("--name", options->name, "VM name instead of the profile's (one profile only)");
  cmd->add_option("--set", options->overrides, "override a profile key, e.g. --set memory=4GiB")
      ->allow_extra_args(false);
  cmd->add_flag("--foreground", options->foreground, "supervise in this process until the VM stops");
  cmd->add_option("--timeout", options->timeout, "seconds to wait for readiness (default: the profile's; up to 86400)")
      ->check(seconds_check(kMaxWaitSeconds));
  cmd->add_flag("--dry-run", options->dry_run, "print the QEMU command line instead of starting");
  cmd->add_flag("--json", options->json, "with --dry-run: the command as a JSON array");
  cmd->callback([&ctx, options] {
    if (options->name && options->profiles.size() > 1) {
      throw CLI::ValidationError("--name", "applies to one profile, " +
                                               std::to_string(options->profiles.size()) + " given");
    }
    if (options->json && !options->dry_run) throw CLI::ValidationError("--json", "goes with --dry-run");
    ctx.action = [&ctx, options] { return up(ctx, *options); };
  });
}

}  // namespace qvm::cli
