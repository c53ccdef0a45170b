#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <ostream>
#include <thread>

#include "cli/cli.hpp"
#include "cli/context.hpp"
#include "cli/terminal_text.hpp"
#include "qvm/qmp.hpp"
#include "qvm/log.hpp"

namespace qvm::cli {
namespace {

std::string uptime_text(const VmStatus& status) {
  if (!status.started_at || !is_active(status.state)) return "-";
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() -
                                                                  *status.started_at).count();
  char text[32];
  if (seconds < 60) {
    std::snprintf(text, sizeof text, "%llds", static_cast<long long>(seconds));
  } else if (seconds < 3600) {
    std::snprintf(text, sizeof text, "%lldm%02llds", static_cast<long long>(seconds / 60),
                  static_cast<long long>(seconds % 60));
  } else {
    std::snprintf(text, sizeof text, "%lldh%02lldm", static_cast<long long>(seconds / 3600),
                  static_cast<long long>((seconds % 3600) / 60));
  }
  return text;
}

std::string memory_text(std::uint64_t mib) {
  if (mib == 0) return "-";
  if (mib % 1024 == 0) return std::to_string(mib / 1024) + "GiB";
  return std::to_string(mib) + "MiB";
}

// Copies `path` (its rotated `.1` copy first) to `out`, then with `follow` what it gains,
// across rotations, until the VM stops.
void follow_file(TerminalOutput& out, const std::filesystem::path& path, const Vm& vm, bool follow) {
  LogReader log(path);
  auto copy_new = [&] {
    for (std::string chunk = log.read_new(); !chunk.empty(); chunk = log.read_new()) {
      out.write(chunk);
    }
  };
  for (;;) {
    copy_new();
    if (!follow) return out.finish();
    // Stop once the VM is down and the file has been read to its end.
    if (!is_active(vm.status().state)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      copy_new();
      return out.finish();
    }
    // Often enough that a flooding guest cannot rotate the log twice in between.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void print_status(Context& ctx, const VmStatus& s) {
  auto row = [&](const char* key, const std::string& value) {
    ctx.out << std::left << std::setw(11) << (std::string(key) + ":") << value << "\n";
  };
  nlohmann::json json = s.to_json();
  row("name", s.name);
  row("state", std::string(to_string(s.state)));
  row("reason", s.reason.empty() ? "-" : s.reason);
  row("pid", s.pid ? std::to_string(*s.pid) : "-");
  row("uuid", s.uuid);
  row("accel", s.accel.empty() ? "-" : s.accel);
  row("uptime", uptime_text(s));
  row("cpus", s.cpus ? std::to_string(s.cpus) : "-");
  row("memory", memory_text(s.memory_mib));
  if (s.restarts > 0) row("restarts", std::to_string(s.restarts));
  if (!s.last_down_step.empty()) row("last down", s.last_down_step);
  if (s.exit_code) row("exit code", std::to_string(*s.exit_code));
  if (s.exit_signal) row("signal", std::to_string(*s.exit_signal));
  row("qmp", json["sockets"]["qmp"].is_string() ? json["sockets"]["qmp"].get<std::string>() : "-");
  row("console", json["sockets"]["console"].is_string() ? json["sockets"]["console"].get<std::string>() : "-");
  row("state dir", s.state_dir.string());
}

}  // namespace

void add_inspection_commands(CLI::App& app, Context& ctx) {
  {
    auto* cmd = app.add_subcommand("ls", "list every defined VM, running or not");
    auto json = std::make_shared<bool>(false);
    cmd->add_flag("--json", *json, "a JSON array of status objects (the status --json schema)");
    cmd->callback([&ctx, json] {
      ctx.action = [&ctx, json] {
        auto all = ctx.inventory()->list();
        if (*json) {
          nlohmann::json array = nlohmann::json::array();
          for (const auto& status : all) array.push_back(status.to_json());
          ctx.out << array.dump(2) << "\n";
          return kSuccess;
        }
        std::size_t width = 4;
        for (const auto& status : all) width = std::max(width, status.name.size());
        auto line = [&](const std::string& name, const std::string& state, const std::string& pid,
                        const std::string& accel, const std::string& cpus, const std::string& memory,
                        const std::string& uptime, const std::string& reason) {
          ctx.out << std::left << std::setw(static_cast<int>(width + 2)) << name << std::setw(10) << state
                  << std::setw(9) << pid << std::setw(7) << accel << std::setw(6) << cpus << std::setw(9)
                  << memory << std::setw(9) << uptime << reason << "\n";
        };
        line("NAME", "STATE", "PID", "ACCEL", "CPUS", "MEMORY", "UPTIME", "REASON");
        for (const auto& s : all) {
          line(s.name, std::string(to_string(s.state)), s.pid ? std::to_string(*s.pid) : "-",
               s.accel.empty() ? "-" : s.accel, s.cpus ? std::to_string(s.cpus) : "-",
               memory_text(s.memory_mib), uptime_text(s), s.reason.empty() ? "-" : s.reason);
        }
        return kSuccess;
      };
    });
  }
  {
    auto* cmd = app.add_subcommand("status", "state, reason, pid, uuid, accel, sockets and uptime of a VM");
    auto name = std::make_shared<std::string>();
    auto json = std::make_shared<bool>(false);
    cmd->add_option("NAME", *name, "VM name")->required();
    cmd->add_flag("--json", *json, "the documented JSON object");
    cmd->callback([&ctx, name, json] {
      ctx.action = [&ctx, name, json] {
        VmStatus status = ctx.inventory()->get(*name).status();
        if (*json) {
          ctx.out << status.to_json().dump(2) << "\n";
        } else {
          print_status(ctx, status);
        }
        return kSuccess;
      };
    });
  }
  {
    auto* cmd = app.add_subcommand("logs", "print the guest's serial console log (or QEMU's own log)");
    auto name = std::make_shared<std::string>();
    auto qemu = std::make_shared<bool>(false);
    auto follow = std::make_shared<bool>(false);
    auto raw = std::make_shared<bool>(false);
    cmd->add_option("NAME", *name, "VM name")->required();
    cmd->add_flag("--qemu", *qemu, "QEMU's stdout and stderr instead");
    cmd->add_flag("-f,--follow", *follow, "keep printing what is added, until the VM stops");
    cmd->add_flag("--raw", *raw, "on a terminal too, print the bytes as they are, escape sequences included");
    cmd->callback([&ctx, name, qemu, follow, raw] {
      ctx.action = [&ctx, name, qemu, follow, raw] {
        Vm vm = ctx.inventory()->get(*name);
        // The guest wrote these bytes: on a terminal, its escape sequences are shown, not obeyed.
        TerminalOutput out(ctx.out, ctx.out_is_terminal && !*raw);
        follow_file(out, *qemu ? vm.qemu_log() : vm.serial_log(), vm, *follow);
        return kSuccess;
      };
    });
  }
  {
    auto* cmd = app.add_subcommand("events", "the QMP event journal, one JSON object per line");
    auto name = std::make_shared<std::string>();
    auto follow = std::make_shared<bool>(false);
    cmd->add_option("NAME", *name, "VM name")->required();
    cmd->add_flag("-f,--follow", *follow, "keep printing new events, until the VM stops");
    cmd->callback([&ctx, name, follow] {
      ctx.action = [&ctx, name, follow] {
        Vm vm = ctx.inventory()->get(*name);
        TerminalOutput out(ctx.out, false);
        follow_file(out, vm.journal_file(), vm, *follow);
        return kSuccess;
      };
    });
  }
  {
    auto* cmd = app.add_subcommand("qmp", "run a raw QMP command and print its reply as JSON");
    auto name = std::make_shared<std::string>();
    auto command = std::make_shared<std::string>();
    auto arguments = std::make_shared<std::string>();
    cmd->add_option("NAME", *name, "VM name")->required();
    cmd->add_option("COMMAND", *command, "QMP command, e.g. query-status")->required();
    cmd->add_option("ARGS", *arguments, "the command's arguments as a JSON object");
    cmd->callback([&ctx, name, command, arguments] {
      nlohmann::json args = nlohmann::json::object();
      if (!arguments->empty()) {
        args = nlohmann::json::parse(*arguments, nullptr, false);
        if (args.is_discarded() || !args.is_object()) {
          throw CLI::ValidationError("ARGS", "must be a JSON object, e.g. '{\"device\": \"disk0\"}'");
        }
      }
      ctx.action = [&ctx, name, command, args] {
        nlohmann::json reply = ctx.inventory()->get(*name).qmp(*command, args);
        ctx.out << reply.dump(2) << "\n";
        return kSuccess;
      };
    });
  }
}

}  // namespace qvm::cli
