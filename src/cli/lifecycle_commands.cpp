#include <CLI/CLI.hpp>
#include <cstdio>
#include <ostream>

#include "cli/cli.hpp"
#include "cli/context.hpp"

namespace qvm::cli {
namespace {

// Adds "qvm VERB NAME" whose action runs `body` with the VM.
CLI::App* add_vm_verb(CLI::App& app, Context& ctx, const std::string& verb, const std::string& help,
                      std::function<int(Context&, Vm&)> body) {
  auto* cmd = app.add_subcommand(verb, help);
  auto name = std::make_shared<std::string>();
  cmd->add_option("NAME", *name, "VM name")->required();
  cmd->callback([&ctx, name, body] {
    ctx.action = [&ctx, name, body] {
      Vm vm = ctx.inventory()->get(*name);
      return body(ctx, vm);
    };
  });
  return cmd;
}

std::string seconds_text(std::chrono::milliseconds elapsed) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f s", static_cast<double>(elapsed.count()) / 1000.0);
  return text;
}

std::string step_text(const std::string& step) {
  if (step == "agent") return "the guest agent shut the guest down";
  if (step == "acpi") return "the guest shut down on the ACPI power button";
  if (step == "quit") return "the guest ignored the power button; QEMU quit on request";
  if (step == "sigterm") return "QEMU ignored quit; SIGTERM stopped it";
  if (step == "sigkill") return "QEMU ignored SIGTERM; SIGKILL stopped it";
  return step;
}

}  // namespace

void add_lifecycle_commands(CLI::App& app, Context& ctx) {
  {
    auto* cmd = app.add_subcommand("start", "start a defined VM from its stored profile");
    auto name = std::make_shared<std::string>();
    auto timeout = std::make_shared<std::optional<double>>();
    auto foreground = std::make_shared<bool>(false);
    cmd->add_option("NAME", *name, "VM name")->required();
    cmd->add_option("--timeout", *timeout, "seconds to wait for readiness (up to 86400)")
        ->check(seconds_check(kMaxWaitSeconds));
    cmd->add_flag("--foreground", *foreground, "supervise in this process until the VM stops");
    cmd->callback([&ctx, name, timeout, foreground] {
      ctx.action = [&ctx, name, timeout, foreground] {
        Vm vm = ctx.inventory()->get(*name);
        StartOptions options;
        options.foreground = *foreground;
        if (*timeout) options.ready_timeout = seconds_rounded_up(**timeout);
        options.on_progress = [&ctx, name](const nlohmann::json& message) { show_progress(ctx, *name, message); };
        VmStatus status = vm.start(options);
        if (*foreground) {
          ctx.out << *name << ": " << to_string(status.state) << " (" << status.reason << ")\n";
          return status.state == VmState::crashed ? kFailure : kSuccess;
        }
        ctx.out << ready_line(status) << "\n";
        return kSuccess;
      };
    });
  }

  for (const char* verb : {"down", "stop"}) {
    auto* cmd = app.add_subcommand(verb, std::string(verb) == "stop" ? "same as down"
                                                                      : "shut a VM down: ACPI power button, then QMP quit, SIGTERM, SIGKILL");
    auto name = std::make_shared<std::string>();
    auto timeout = std::make_shared<std::optional<double>>();
    auto force = std::make_shared<bool>(false);
    cmd->add_option("NAME", *name, "VM name")->required();
    cmd->add_option("--timeout", *timeout, "seconds the guest gets to shut down after the power button (default: the profile's [shutdown] timeout)")
        ->check(seconds_check(kMaxWaitSeconds, true));
    cmd->add_flag("--force", *force, "skip the power button: QMP quit, then signals");
    cmd->callback([&ctx, name, timeout, force] {
      ctx.action = [&ctx, name, timeout, force] {
        Vm vm = ctx.inventory()->get(*name);
        std::optional<std::chrono::seconds> limit;
        if (*timeout) limit = std::chrono::seconds(static_cast<long>(**timeout));
        auto progress = [&ctx, name](const std::string& message) {
          if (ctx.interactive) ctx.err << "\r\033[K" << *name << ": " << message << "..." << std::flush;
        };
        DownResult result = vm.down(limit, *force, progress);
        if (ctx.interactive) ctx.err << "\r\033[K" << std::flush;
        if (!result.warning.empty()) ctx.warn(result.warning);
        if (result.step == "already stopped") {
          ctx.out << *name << ": already " << to_string(result.status.state) << "\n";
        } else {
          ctx.out << *name << ": stopped in " << seconds_text(result.elapsed) << " ("
                  << step_text(result.step) << ")\n";
        }
        return kSuccess;
      };
    });
  }

  add_vm_verb(app, ctx, "kill", "stop a VM at once (SIGKILL to QEMU)", [](Context& c, Vm& vm) {
    VmStatus status = vm.kill();
    c.out << vm.name() << ": " << to_string(status.state) << " (" << status.reason << ")\n";
    return kSuccess;
  });
  add_vm_verb(app, ctx, "pause", "freeze the guest's CPUs", [](Context& c, Vm& vm) {
    vm.pause();
    c.out << vm.name() << ": paused\n";
    return kSuccess;
  });
  add_vm_verb(app, ctx, "resume", "unfreeze a paused guest", [](Context& c, Vm& vm) {
    vm.resume();
    c.out << vm.name() << ": running\n";
    return kSuccess;
  });
  add_vm_verb(app, ctx, "reboot", "reboot the guest (through the guest agent, else a reset)", [](Context& c, Vm& vm) {
    std::string how = vm.reboot();
    c.out << vm.name() << ": rebooting"
          << (how == "agent" ? " (asked the guest agent)" : " (hardware reset: no guest agent answered)") << "\n";
    return kSuccess;
  });

  {
    auto* cmd = app.add_subcommand("exec", "run a command in the guest through its guest agent; its exit code passes through");
    auto name = std::make_shared<std::string>();
    auto command = std::make_shared<std::vector<std::string>>();
    auto timeout = std::make_shared<double>(3600);
    cmd->add_option("NAME", *name, "VM name")->required();
    cmd->add_option("--timeout", *timeout, "seconds the command may run (default 3600, up to 604800)")
        ->check(seconds_check(kMaxCommandSeconds));
    cmd->add_option("CMD", *command, "the command and its arguments, after --")->required();
    cmd->callback([&ctx, name, command, timeout] {
      ctx.action = [&ctx, name, command, timeout] {
        Vm vm = ctx.inventory()->get(*name);
        int code;
        try {
          code = vm.exec(
              *command, [&ctx](std::string_view chunk) { ctx.out.write(chunk.data(), static_cast<std::streamsize>(chunk.size())); ctx.out.flush(); },
              [&ctx](std::string_view chunk) { ctx.err.write(chunk.data(), static_cast<std::streamsize>(chunk.size())); ctx.err.flush(); },
              milliseconds_rounded_up(*timeout));
        } catch (const std::exception& e) {
          // 125: qvm itself could not run the command (as for docker and podman); every
          // other code is the command's own.
          ctx.err << "qvm: error: " << e.what() << "\n";
          return static_cast<int>(kExecFailed);
        }
        return code;
      };
    });
  }
  add_vm_verb(app, ctx, "reset", "hard-reset the VM (like pressing its reset button)", [](Context& c, Vm& vm) {
    vm.reset();
    c.out << vm.name() << ": reset\n";
    return kSuccess;
  });

  {
    auto* cmd = app.add_subcommand("rm", "undefine a VM (its disks are kept unless --disks)");
    auto name = std::make_shared<std::string>();
    auto force = std::make_shared<bool>(false);
    auto disks = std::make_shared<bool>(false);
    cmd->add_option("NAME", *name, "VM name")->required();
    cmd->add_flag("--force", *force, "kill the VM first if it is running");
    cmd->add_flag("--disks", *disks, "also delete the disk images qvm created for it");
    cmd->callback([&ctx, name, force, disks] {
      ctx.action = [&ctx, name, force, disks] {
        std::vector<KeptDisk> kept;
        auto deleted = ctx.inventory()->remove(*name, *force, *disks, &kept);
        for (const auto& path : deleted) ctx.out << *name << ": deleted " << path.string() << "\n";
        for (const auto& disk : kept) {
          ctx.warn(*name + ": " + (disk.path.empty() ? "" : "kept " + disk.path.string() + ": ") +
                   disk.reason);
        }
        ctx.out << *name << ": removed\n";
        return kSuccess;
      };
    });
  }
}

}  // namespace qvm::cli
