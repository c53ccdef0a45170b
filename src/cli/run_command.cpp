// `qvm run [--rm] PROFILE -- CMD...`: a throwaway VM for CI, like libvirt's AUTODESTROY.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <fstream>
#include <future>
#include <ostream>
#include <random>
#include <thread>

#include "cli/cli.hpp"
#include "cli/context.hpp"
#include "qvm/agent.hpp"

namespace qvm::cli {
namespace fs = std::filesystem;
namespace {

// Exit codes of `run` besides the command's own (documented in the README).
constexpr int kRunCrashed = 123;   // the VM crashed or the guest panicked during the run
constexpr int kRunTimeout = 124;   // not ready in time, or the command ran too long
constexpr int kRunInterrupted = 130;

struct RunOptions {
  std::string profile;
  std::vector<std::string> command;
  std::optional<std::string> name;
  std::vector<std::string> overrides;
  std::optional<std::string> accel;
  bool rm = false;
  double timeout = 3600;
  std::optional<double> boot_timeout;
  std::optional<std::string> junit;
  bool json = false;
};

struct RunResult {
  std::string outcome = "error";  // passed, failed, boot-timeout, timeout, crashed, interrupted, error
  int exit_code = kExecFailed;
  std::string vm;
  std::string out;
  std::string err;
  std::string message;
  double boot_seconds = 0;
  double command_seconds = 0;
};

std::string random_suffix() {
  std::random_device device;
  std::uniform_int_distribution<int> digit(0, 15);
  std::string text;
  for (int i = 0; i < 6; ++i) text += "0123456789abcdef"[digit(device)];
  return text;
}

std::string xml_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default:
        // XML 1.0 has no place for other control characters.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t' && c != '\r') {
          out += '?';
        } else {
          out += c;
        }
    }
  }
  return out;
}

void write_junit(const fs::path& file, const RunResult& result, const std::vector<std::string>& command) {
  std::string name;
  for (const auto& word : command) name += (name.empty() ? "" : " ") + word;
  const bool failed = result.outcome != "passed";
  std::ofstream out(file, std::ios::trunc);
  out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << "<testsuites>\n"
      << "  <testsuite name=\"qvm run " << xml_escape(result.vm) << "\" tests=\"1\" failures=\""
      << (failed ? 1 : 0) << "\" time=\"" << result.boot_seconds + result.command_seconds << "\">\n"
      << "    <testcase classname=\"qvm.run\" name=\"" << xml_escape(name) << "\" time=\"" << result.command_seconds
      << "\">\n";
  if (failed) {
    out << "      <failure message=\"" << xml_escape(result.message.empty() ? "exit code " + std::to_string(result.exit_code) : result.message)
        << "\" type=\"" << result.outcome << "\"/>\n";
  }
  out << "      <system-out>" << xml_escape(result.out) << "</system-out>\n"
      << "      <system-err>" << xml_escape(result.err) << "</system-err>\n"
      << "    </testcase>\n  </testsuite>\n</testsuites>\n";
  if (!out) throw Error("cannot write " + file.string());
}

// A process that outlives a SIGKILL of qvm: when this process is gone for any reason, it
// kills the VM's QEMU and, with --rm, deletes everything the run created.
class Reaper {
 public:
  Reaper(const Inventory& inventory, const std::string& name, bool remove) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw Error(std::string("pipe: ") + std::strerror(errno));
    pid_ = ::fork();
    if (pid_ < 0) throw Error(std::string("fork: ") + std::strerror(errno));
    if (pid_ == 0) {
      ::close(fds[1]);
      // Its own session: a kill of qvm's process group (a CI job being cancelled) spares it.
      ::setsid();
      for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) ::signal(sig, SIG_IGN);
      int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
      for (int fd : {0, 1, 2}) ::dup2(null_fd, fd);
      char byte;
      while (::read(fds[0], &byte, 1) < 0 && errno == EINTR) {
      }
      inventory.reap_transient(name, remove);
      ::_exit(0);
    }
    ::close(fds[0]);
    write_end_ = fds[1];
  }
  ~Reaper() {
    if (write_end_ >= 0) ::close(write_end_);
    if (pid_ > 0) ::waitpid(pid_, nullptr, 0);
  }

 private:
  pid_t pid_ = -1;
  int write_end_ = -1;
};

Profile load_run_profile(const RunOptions& options) {
  std::vector<std::string> overrides = options.overrides;
  if (options.accel) overrides.push_back("accel=" + *options.accel);
  Profile profile = load_profile(options.profile, {overrides, options.name, nullptr});
  if (!options.name) profile.name += "-run-" + random_suffix();
  profile.uuid.reset();
  return profile;
}

// The profile of the throwaway VM: it runs the command through the guest agent, so it is
// ready once the agent answers, and it never restarts.
Profile transient_profile(Profile profile, const RunOptions& options) {
  profile.agent = true;
  Ready ready = profile.ready.value_or(Ready{});
  ready.agent = true;
  if (options.boot_timeout) ready.timeout = seconds_rounded_up(*options.boot_timeout);
  profile.ready = ready;
  profile.shutdown.restart = RestartPolicy::no;
  return profile;
}

int run_vm(Context& ctx, const RunOptions& options) {
  auto inventory = ctx.inventory();
  RunResult result;
  const auto started = std::chrono::steady_clock::now();
  auto seconds_since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };

  // Validate before anything exists on disk, so a bad profile leaves nothing behind.
  Profile loaded = load_run_profile(options);
  if (inventory->defined(loaded.name)) {
    throw VmStateError("a VM named \"" + loaded.name + "\" already exists; qvm run needs a new name");
  }
  std::optional<Reaper> reaper;
  std::thread supervisor;
  std::promise<std::string> ready;  // "" when ready, else the error
  try {
    result.vm = loaded.name;
    // From here on, whatever happens to this process, the reaper cleans up after it.
    reaper.emplace(*inventory, loaded.name, options.rm);
    // Every writable disk runs on a throwaway overlay; the images the profile names are
    // never written.
    Vm vm = inventory->define_transient(transient_profile(loaded, options), options.rm);

    // The supervisor runs here, on its own thread: QEMU dies with that thread, and so
    // with this process however it ends.
    supervisor = std::thread([&] {
      StartOptions start;
      start.foreground = true;
      start.die_with_caller = true;
      bool reported = false;
      start.on_progress = [&](const nlohmann::json& message) {
        show_progress(ctx, vm.name(), message);
        const std::string phase = message.value("phase", "");
        if (!reported && (phase == "ready" || phase == "failed")) {
          reported = true;
          ready.set_value(phase == "ready" ? "" : message.value("error", "the VM failed to start"));
        }
      };
      try {
        vm.start(start);
      } catch (const std::exception& e) {
        if (!reported) ready.set_value(e.what());
        reported = true;
      }
      if (!reported) ready.set_value("the VM stopped before it was ready");
    });

    std::string boot_error = ready.get_future().get();
    result.boot_seconds = seconds_since(started);
    if (!boot_error.empty()) {
      result.message = boot_error;
      const bool timed_out = boot_error.find("not ready after") != std::string::npos;
      result.outcome = timed_out ? "boot-timeout" : "error";
      result.exit_code = timed_out ? kRunTimeout : kExecFailed;
    } else {
      const auto command_started = std::chrono::steady_clock::now();
      auto to_out = [&](std::string_view chunk) {
        if (options.json) {
          result.out.append(chunk);
        } else {
          ctx.out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
          ctx.out.flush();
          if (options.junit) result.out.append(chunk);
        }
      };
      auto to_err = [&](std::string_view chunk) {
        if (options.json) {
          result.err.append(chunk);
        } else {
          ctx.err.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
          ctx.err.flush();
          if (options.junit) result.err.append(chunk);
        }
      };
      try {
        result.exit_code = vm.exec(options.command, to_out, to_err,
                                   milliseconds_rounded_up(options.timeout));
        result.outcome = result.exit_code == 0 ? "passed" : "failed";
      } catch (const AgentTimeout& e) {
        result.outcome = "timeout";
        result.exit_code = kRunTimeout;
        result.message = e.what();
      } catch (const std::exception& e) {
        // The agent went away: the guest panicked, QEMU died, or we were interrupted. The
        // supervisor knows which once it has seen QEMU exit.
        VmStatus now = vm.status();
        for (int i = 0; i < 200 && now.pid; ++i) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          now = vm.status();
        }
        if (now.state == VmState::crashed || now.reason_code == "guest-panic") {
          result.outcome = "crashed";
          result.exit_code = kRunCrashed;
          result.message = "the VM " + std::string(to_string(now.state)) + ": " + now.reason;
        } else if (now.reason_code == "host-request") {
          result.outcome = "interrupted";
          result.exit_code = kRunInterrupted;
          result.message = "interrupted";
        } else {
          result.message = e.what();
        }
      }
      result.command_seconds = seconds_since(command_started);
    }
    // Stop the VM (gracefully: the agent, then the ladder) and wait for its supervisor.
    try {
      if (vm.status().pid) vm.down(std::chrono::seconds(30), false);
    } catch (const std::exception&) {
      try {
        vm.kill();
      } catch (const std::exception&) {
      }
    }
    supervisor.join();
    if (result.outcome == "failed" || result.outcome == "passed") {
      // A guest that panicked right at the end still counts as a crash.
      VmStatus end = vm.status();
      if (end.reason_code == "guest-panic") {
        result.outcome = "crashed";
        result.exit_code = kRunCrashed;
        result.message = "the guest panicked";
      }
    }
    if (options.rm) inventory->remove(vm.name(), true, true);
  } catch (...) {
    if (supervisor.joinable()) {
      try {
        if (!result.vm.empty()) inventory->get(result.vm).kill();
      } catch (const std::exception&) {
      }
      supervisor.join();
    }
    if (options.rm && !result.vm.empty()) inventory->reap_transient(result.vm, true);
    throw;
  }

  if (options.junit) write_junit(*options.junit, result, options.command);
  if (options.json) {
    ctx.out << nlohmann::json{{"vm", result.vm},
                              {"outcome", result.outcome},
                              {"exit_code", result.exit_code},
                              {"stdout", result.out},
                              {"stderr", result.err},
                              {"message", result.message},
                              {"boot_seconds", result.boot_seconds},
                              {"command_seconds", result.command_seconds}}
                   .dump()
            << "\n";
  } else if (!result.message.empty()) {
    ctx.err << "qvm: error: " << result.vm << ": " << result.message << "\n";
  }
  return result.exit_code;
}

}  // namespace

void add_run_command(CLI::App& app, Context& ctx) {
  auto options = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand("run", "boot a throwaway VM, run a command in it through the guest agent, "
                                        "stop it; the exit code is the command's");
  cmd->add_option("PROFILE", options->profile, "profile file")->required();
  cmd->add_option("CMD", options->command, "the command and its arguments, after --")->required();
  cmd->add_flag("--rm", options->rm, "delete the VM and everything it created afterwards");
  cmd->add_option("--name", options->name, "VM name (default: the profile's name plus a random suffix)");
  cmd->add_option("--set", options->overrides, "override a profile key, e.g. --set memory=4GiB")->allow_extra_args(false);
  cmd->add_option("--accel", options->accel, "kvm or tcg; without KVM, run refuses unless --accel tcg")
      ->check(CLI::IsMember({"kvm", "tcg"}));
  cmd->add_option("--timeout", options->timeout, "seconds the command may run (default 3600, up to 604800)")
      ->check(seconds_check(kMaxCommandSeconds));
  cmd->add_option("--boot-timeout", options->boot_timeout,
                  "seconds to wait for the guest agent (default: the profile's; up to 86400)")
      ->check(seconds_check(kMaxWaitSeconds));
  cmd->add_option("--junit", options->junit, "write a JUnit XML report here");
  cmd->add_flag("--json", options->json, "print one JSON result (with the command's output) instead of streaming");
  cmd->callback([&ctx, options] {
    ctx.action = [&ctx, options] {
      try {
        return run_vm(ctx, *options);
      } catch (const ProfileError&) {
        throw;
      } catch (const std::exception& e) {
        ctx.err << "qvm: error: " << e.what() << "\n";
        return static_cast<int>(kExecFailed);
      }
    };
  });
}

}  // namespace qvm::cli
