#include <CLI/CLI.hpp>
#include <ostream>

#include "cli/cli.hpp"
#include "cli/context.hpp"
#include "qvm/profile_schema.hpp"

namespace qvm::cli {

void add_schema_command(CLI::App& app, Context& ctx) {
  auto* cmd = app.add_subcommand(
      "schema", "print a JSON Schema (draft 2020-12) of the profile, for editors such as taplo");
  cmd->callback([&ctx] {
    ctx.action = [&ctx] {
      ctx.out << profile_json_schema().dump(2) << "\n";
      return kSuccess;
    };
  });
}

}  // namespace qvm::cli
