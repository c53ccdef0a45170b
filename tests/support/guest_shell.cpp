#include "support/guest_shell.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <regex>
#include <stdexcept>
#include <string_view>

namespace qvm::testing {
namespace {

// The guest shell's prompt (scripts/guest/console-shell). A shell that has just started
// after a boot, or finished the previous command, prints it whenever it gets there: before
// this command's output if the console was connected by then, or to nobody. qvm up returns
// at the ready line, which the guest prints just before its shell starts.
constexpr std::string_view kPrompt = "qvm# ";

std::string without_prompts(std::string output) {
  for (auto at = output.find(kPrompt); at != std::string::npos; at = output.find(kPrompt, at)) {
    output.erase(at, kPrompt.size());
  }
  return output;
}

}  // namespace

std::string run_in_guest(const std::filesystem::path& console_socket, const std::string& command,
                         std::chrono::seconds timeout, int* status) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, console_socket.c_str(), sizeof address.sun_path - 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("cannot connect to " + console_socket.string());
  }
  // The marker is built by the shell from two halves, so the command's own text (which the
  // guest does not echo anyway) can never look like it.
  const std::string line = command + "; echo \"__QVM\"\"_DONE_$?__\"\n";
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    ::close(fd);
    throw std::runtime_error("cannot write to the guest console");
  }
  static const std::regex marker("__QVM_DONE_(\\d+)__");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string output;
  char buffer[4096];
  for (;;) {
    std::smatch match;
    if (std::regex_search(output, match, marker)) {
      if (status) *status = std::stoi(match[1].str());
      ::close(fd);
      return without_prompts(output.substr(0, static_cast<std::size_t>(match.position(0))));
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd entry{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&entry, 1, static_cast<int>(left.count())) <= 0) break;
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n <= 0) break;
    output.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  throw std::runtime_error("the guest did not finish `" + command + "`; it printed: " + output);
}

}  // namespace qvm::testing
