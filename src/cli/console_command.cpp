#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <ostream>

#include "cli/cli.hpp"
#include "cli/context.hpp"
#include "cli/terminal_text.hpp"

namespace qvm::cli {
namespace {

constexpr char kDetach = 0x1d;  // Ctrl-]

// Puts the terminal in raw mode for the lifetime of the object.
class RawTerminal {
 public:
  explicit RawTerminal(int fd) : fd_(fd) {
    if (tcgetattr(fd_, &saved_) != 0) return;
    termios raw = saved_;
    cfmakeraw(&raw);
    active_ = tcsetattr(fd_, TCSANOW, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) tcsetattr(fd_, TCSANOW, &saved_);
  }

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

bool write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

int connect_console(const std::filesystem::path& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Error(std::string("socket: ") + std::strerror(errno));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    int err = errno;
    ::close(fd);
    throw Error("cannot connect to the serial console at " + path.string() + ": " + std::strerror(err) +
                (err == ECONNREFUSED ? " (is another qvm console attached?)" : ""));
  }
  return fd;
}

// Relays between the terminal (or pipes) and the console socket. With a terminal, Ctrl-]
// detaches. With piped input, the relay ends once the input has ended and the guest has
// answered and then been quiet for half a second (or said nothing for five seconds). What the
// guest sends goes through `out`; what is typed goes to the guest as it is.
int relay(Context& ctx, TerminalOutput& out, int socket_fd, bool tty) {
  bool input_open = true;
  bool answered = false;
  int quiet_polls = 0;
  char buffer[4096];
  for (;;) {
    pollfd fds[2] = {{socket_fd, POLLIN, 0}, {STDIN_FILENO, static_cast<short>(input_open ? POLLIN : 0), 0}};
    int r = ::poll(fds, input_open ? 2 : 1, input_open ? -1 : 100);
    if (r < 0) {
      if (errno == EINTR) continue;
      return kFailure;
    }
    if (r == 0) {
      ++quiet_polls;
      if ((answered && quiet_polls >= 5) || quiet_polls >= 50) return kSuccess;
      continue;
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::read(socket_fd, buffer, sizeof buffer);
      if (n <= 0) {
        out.finish();
        if (tty) ctx.err << "\r\n";
        ctx.err << "qvm: the console closed (the VM stopped)\n";
        return kSuccess;
      }
      quiet_polls = 0;
      if (!input_open) answered = true;
      out.write({buffer, static_cast<std::size_t>(n)});
    }
    if (input_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t n = ::read(STDIN_FILENO, buffer, sizeof buffer);
      if (n <= 0) {
        input_open = false;
        continue;
      }
      if (tty) {
        if (void* at = std::memchr(buffer, kDetach, static_cast<std::size_t>(n))) {
          write_all(socket_fd, buffer, static_cast<std::size_t>(static_cast<char*>(at) - buffer));
          ctx.err << "\r\nqvm: detached from the console\r\n";
          return kSuccess;
        }
      }
      if (!write_all(socket_fd, buffer, static_cast<std::size_t>(n))) return kFailure;
    }
  }
}

}  // namespace

void add_console_command(CLI::App& app, Context& ctx) {
  auto* cmd = app.add_subcommand("console", "attach to a VM's serial console (Ctrl-] detaches)");
  auto name = std::make_shared<std::string>();
  auto raw = std::make_shared<bool>(false);
  cmd->add_option("NAME", *name, "VM name")->required();
  cmd->add_flag("--raw", *raw,
                "on a terminal too, pass the guest's escape sequences to it (for full-screen programs)");
  cmd->callback([&ctx, name, raw] {
    ctx.action = [&ctx, name, raw] {
      Vm vm = ctx.inventory()->get(*name);
      VmStatus status = vm.status();
      if (status.state == VmState::stopped || status.state == VmState::crashed) {
        throw VmStateError("VM \"" + *name + "\" is " + std::string(to_string(status.state)));
      }
      int fd = connect_console(vm.console_socket());
      const bool tty = ::isatty(STDIN_FILENO);
      if (tty) ctx.err << "Connected to the serial console of " << *name << "; press Ctrl-] to detach.\r\n";
      int code;
      {
        std::optional<RawTerminal> raw_terminal;
        if (tty) raw_terminal.emplace(STDIN_FILENO);
        // The guest's escape sequences are shown, not obeyed, unless asked for.
        TerminalOutput out(ctx.out, ctx.out_is_terminal && !*raw);
        code = relay(ctx, out, fd, tty);
        out.finish();
      }
      ::close(fd);
      return code;
    };
  });
}

void add_supervise_command(CLI::App& app, Context& ctx) {
  auto* cmd = app.add_subcommand("__supervise", "");
  cmd->group("");  // hidden: started by qvm up/start
  auto name = std::make_shared<std::string>();
  auto notify_fd = std::make_shared<int>(-1);
  auto timeout = std::make_shared<std::optional<long>>();
  auto attach = std::make_shared<std::optional<int>>();
  cmd->add_option("NAME", *name)->required();
  cmd->add_option("--notify-fd", *notify_fd);
  cmd->add_option("--timeout", *timeout)->check(CLI::Range(std::int64_t{1}, kMaxWaitSeconds));
  cmd->add_option("--attach", *attach);
  cmd->callback([&ctx, name, notify_fd, timeout, attach] {
    ctx.action = [&ctx, name, notify_fd, timeout, attach] {
      std::optional<std::chrono::seconds> ready_timeout;
      if (*timeout) ready_timeout = std::chrono::seconds(**timeout);
      return ctx.inventory()->supervise_detached(*name, *notify_fd, ready_timeout, *attach);
    };
  });
}

}  // namespace qvm::cli
