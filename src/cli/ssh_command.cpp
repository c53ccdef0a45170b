#include "cli/ssh_command.hpp"

#include <pwd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <iostream>

#include "cli/cli.hpp"
#include "cli/context.hpp"
#include "qvm/error.hpp"

namespace qvm::cli {

std::vector<std::string> ssh_argv(const Profile& profile, const SshRequest& request) {
  const PortForward* to_ssh = nullptr;
  for (const auto& net : profile.nets) {
    if (net.mode != NetMode::user) continue;
    for (const auto& forward : net.forward) {
      if (forward.protocol == "tcp" && forward.guest_port == 22) {
        to_ssh = &forward;
        break;
      }
    }
    if (to_ssh) break;
  }
  if (!to_ssh) {
    throw UsageError("VM \"" + request.vm +
                     "\" forwards no host port to guest port 22; add forward = [\"tcp:2222:22\"] "
                     "to a user-mode [[net]] of its profile");
  }
  // A rule bound to every interface is reached through loopback like any other.
  const std::string address =
      to_ssh->host_address == "0.0.0.0" || to_ssh->host_address.empty() ? "127.0.0.1" : to_ssh->host_address;
  const std::string user = request.user                      ? *request.user
                           : profile.cloud_init && profile.cloud_init->user ? *profile.cloud_init->user
                                                                            : request.local_user;
  std::vector<std::string> argv = {
      "ssh",
      "-p", std::to_string(to_ssh->host_port),
      "-o", "HostKeyAlias=qvm-" + request.vm,
      "-o", "UserKnownHostsFile=" + (request.state_dir / "known_hosts").string(),
      "-o", "StrictHostKeyChecking=accept-new",
  };
  if (request.identity) {
    argv.insert(argv.end(), {"-i", request.identity->string(), "-o", "IdentitiesOnly=yes"});
  }
  argv.push_back(user.empty() ? address : user + "@" + address);
  argv.insert(argv.end(), request.extra.begin(), request.extra.end());
  return argv;
}

namespace {

std::string local_user_name() {
  struct passwd entry {};
  struct passwd* found = nullptr;
  std::vector<char> buffer(16384);
  if (::getpwuid_r(::geteuid(), &entry, buffer.data(), buffer.size(), &found) == 0 && found) {
    return found->pw_name;
  }
  const char* user = std::getenv("USER");
  return user ? user : "";
}

}  // namespace

void add_ssh_command(CLI::App& app, Context& ctx) {
  auto* cmd = app.add_subcommand("ssh", "ssh into the guest through its forwarded port 22");
  auto request = std::make_shared<SshRequest>();
  auto identity = std::make_shared<std::string>();
  auto user = std::make_shared<std::string>();
  cmd->add_option("NAME", request->vm, "VM name")->required();
  cmd->add_option("--user,-l", *user, "guest user (default: the profile's [cloud_init] user, else yours)");
  cmd->add_option("--identity,-i", *identity, "private key file")->check(CLI::ExistingFile);
  cmd->add_option("SSH-ARGS", request->extra, "after --: more ssh arguments, e.g. a remote command");
  cmd->callback([&ctx, request, identity, user] {
    ctx.action = [&ctx, request, identity, user]() -> int {
      Vm vm = ctx.inventory()->get(request->vm);
      const VmStatus status = vm.status();
      if (status.state != VmState::running && status.state != VmState::paused) {
        throw VmStateError("VM \"" + request->vm + "\" is " + std::string(to_string(status.state)) +
                           "; start it first (qvm start " + request->vm + ")");
      }
      if (!user->empty()) request->user = *user;
      if (!identity->empty()) request->identity = std::filesystem::absolute(*identity);
      request->state_dir = status.state_dir;
      request->local_user = local_user_name();
      const std::vector<std::string> argv = ssh_argv(vm.profile(), *request);
      std::vector<char*> pointers;
      for (const auto& arg : argv) pointers.push_back(const_cast<char*>(arg.c_str()));
      pointers.push_back(nullptr);
      ctx.out.flush();
      ctx.err.flush();
      std::cout.flush();
      ::execvp("ssh", pointers.data());
      const int error = errno;
      throw Error(std::string("cannot run ssh: ") + std::strerror(error) +
                  (error == ENOENT ? " (apt-get install openssh-client)" : ""));
    };
  });
}

}  // namespace qvm::cli
