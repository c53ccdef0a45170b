#include <CLI/CLI.hpp>
#include <ostream>

#include "cli/cli.hpp"
#include "cli/context.hpp"
#include "qvm/profile.hpp"

namespace qvm::cli {

void add_validate_command(CLI::App& app, Context& ctx) {
  auto* cmd = app.add_subcommand("validate", "check profiles; print OK or every problem found");
  auto files = std::make_shared<std::vector<std::string>>();
  cmd->add_option("PROFILE", *files, "profile files")->required();
  cmd->callback([&ctx, files] {
    ctx.action = [&ctx, files] {
      int status = kSuccess;
      for (const auto& file : *files) {
        try {
          Profile profile = load_profile(file);
          ctx.out << file << ": OK (" << profile.name << ")\n";
        } catch (const ProfileError& e) {
          for (const auto& diagnostic : e.diagnostics()) ctx.err << diagnostic.to_string() << "\n";
          status = kUsage;
        }
      }
      return status;
    };
  });
}

}  // namespace qvm::cli
