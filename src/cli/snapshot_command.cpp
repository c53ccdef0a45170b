#include <CLI/CLI.hpp>
#include <ostream>

#include "cli/cli.hpp"
#include "cli/context.hpp"
#include "qvm/error.hpp"

namespace qvm::cli {

void add_snapshot_command(CLI::App& app, Context& ctx) {
  auto* group = app.add_subcommand("snapshot", "snapshot tree of a VM's disks: create, ls, revert, rm");
  group->require_subcommand(1);

  {
    auto* cmd = group->add_subcommand("create", "snapshot every writable disk at one instant (live if running)");
    auto name = std::make_shared<std::string>();
    auto snap = std::make_shared<std::string>();
    auto description = std::make_shared<std::string>();
    cmd->add_option("NAME", *name, "VM name")->required();
    cmd->add_option("SNAP", *snap, "snapshot name")->required();
    cmd->add_option("--description", *description, "a note kept with the snapshot");
    cmd->callback([&ctx, name, snap, description] {
      ctx.action = [&ctx, name, snap, description] {
        try {
          check_snapshot_name(*snap);
        } catch (const Error& e) {
          throw UsageError(std::string("SNAP: ") + e.what());
        }
        SnapshotInfo info = ctx.inventory()->get(*name).snapshot_create(*snap, *description);
        ctx.out << *name << ": snapshot " << info.name << " created (" << info.vm_state << ")\n";
        return kSuccess;
      };
    });
  }
  {
    auto* cmd = group->add_subcommand("ls", "the snapshot tree, the current point marked with *");
    auto name = std::make_shared<std::string>();
    auto json = std::make_shared<bool>(false);
    cmd->add_option("NAME", *name, "VM name")->required();
    cmd->add_flag("--json", *json, "{\"current\": ..., \"snapshots\": [...]}");
    cmd->callback([&ctx, name, json] {
      ctx.action = [&ctx, name, json] {
        Vm vm = ctx.inventory()->get(*name);
        if (*json) {
          nlohmann::json list = nlohmann::json::array();
          nlohmann::json current = nullptr;
          for (const auto& info : vm.snapshots()) {
            list.push_back(info.to_json());
            if (info.current) current = info.name;
          }
          ctx.out << nlohmann::json{{"current", current}, {"snapshots", list}}.dump(2) << "\n";
        } else {
          ctx.out << vm.snapshot_tree();
        }
        return kSuccess;
      };
    });
  }
  {
    auto* cmd = group->add_subcommand("revert", "return the disks to a snapshot (a running VM restarts)");
    auto name = std::make_shared<std::string>();
    auto snap = std::make_shared<std::string>();
    cmd->add_option("NAME", *name, "VM name")->required();
    cmd->add_option("SNAP", *snap, "snapshot name")->required();
    cmd->callback([&ctx, name, snap] {
      ctx.action = [&ctx, name, snap] {
        Vm vm = ctx.inventory()->get(*name);
        StartOptions restart;
        restart.on_progress = [&ctx, name](const nlohmann::json& message) { show_progress(ctx, *name, message); };
        vm.snapshot_revert(*snap, restart);
        ctx.out << *name << ": reverted to " << *snap << " (" << to_string(vm.status().state) << ")\n";
        return kSuccess;
      };
    });
  }
  {
    auto* cmd = group->add_subcommand("rm", "merge a snapshot away and delete what nothing needs");
    auto name = std::make_shared<std::string>();
    auto snap = std::make_shared<std::string>();
    cmd->add_option("NAME", *name, "VM name")->required();
    cmd->add_option("SNAP", *snap, "snapshot name")->required();
    cmd->callback([&ctx, name, snap] {
      ctx.action = [&ctx, name, snap] {
        Vm vm = ctx.inventory()->get(*name);
        vm.snapshot_remove(*snap, [&ctx, name](const std::string& message) {
          if (ctx.interactive) ctx.err << "\r\033[K" << *name << ": " << message << std::flush;
        });
        if (ctx.interactive) ctx.err << "\r\033[K" << std::flush;
        ctx.out << *name << ": snapshot " << *snap << " removed\n";
        return kSuccess;
      };
    });
  }
}

}  // namespace qvm::cli
