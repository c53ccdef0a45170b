// QMP round trip of `query-status` against one real QEMU: qvm's blocking client
// (qvm::QmpSession) and a minimal blocking socket loop, each on its own monitor of the
// same QEMU, in alternating blocks so that both see the same machine load.
//
// Usage: qmp_round_trip --qemu BINARY --dir DIR [--blocks N] [--calls N] [--warmup N]
//                       [--only qvm|raw]
// (--only: time one side alone, e.g. under strace -c or perf record)
//
// Prints scripts/bench.sh sample lines (tab-separated):
//   sample  qmp_rtt.qvm|qmp_rtt.raw          <round trip>       ns   (every call)
//   sample  qmp_rtt_p99.qvm|qmp_rtt_p99.raw  <p99 of one block> ns   (every block)
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "qvm/qmp.hpp"

namespace qvm::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string qemu = "qemu-system-x86_64";
  fs::path dir;
  int blocks = 20;
  int calls = 200;
  int warmup = 200;
  std::string only;  // "qvm" or "raw": that side alone; empty: both
};

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

Options parse_options(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) fail(arg + " needs a value");
    const std::string value = argv[++i];
    if (arg == "--qemu") {
      options.qemu = value;
    } else if (arg == "--dir") {
      options.dir = value;
    } else if (arg == "--blocks") {
      options.blocks = std::stoi(value);
    } else if (arg == "--calls") {
      options.calls = std::stoi(value);
    } else if (arg == "--warmup") {
      options.warmup = std::stoi(value);
    } else if (arg == "--only") {
      options.only = value;
    } else {
      fail("unknown option " + arg);
    }
  }
  if (options.dir.empty() || options.blocks < 1 || options.calls < 1 ||
      (!options.only.empty() && options.only != "qvm" && options.only != "raw")) {
    fail("usage: qmp_round_trip --qemu BINARY --dir DIR [--blocks N] [--calls N] [--warmup N] [--only qvm|raw]");
  }
  return options;
}

// A QEMU with no machine, stopped, serving two QMP monitors; killed when this object goes.
class IdleQemu {
 public:
  IdleQemu(const std::string& binary, const fs::path& qvm_socket, const fs::path& raw_socket,
           const fs::path& log) {
    std::vector<std::string> argv = {binary, "-machine", "none", "-nodefaults", "-no-user-config",
                                     "-display", "none", "-S",
                                     "-chardev", "socket,id=m0,path=" + qvm_socket.string() + ",server=on,wait=off",
                                     "-mon", "chardev=m0,mode=control",
                                     "-chardev", "socket,id=m1,path=" + raw_socket.string() + ",server=on,wait=off",
                                     "-mon", "chardev=m1,mode=control"};
    std::vector<char*> args;
    for (auto& word : argv) args.push_back(word.data());
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) fail(std::string("fork: ") + std::strerror(errno));
    if (pid_ == 0) {
      int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (out >= 0) {
        ::dup2(out, STDOUT_FILENO);
        ::dup2(out, STDERR_FILENO);
      }
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
  }
  ~IdleQemu() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  IdleQemu(const IdleQemu&) = delete;
  IdleQemu& operator=(const IdleQemu&) = delete;

 private:
  pid_t pid_ = -1;
};

// The floor: one blocking socket, write the request, read until the newline.
class RawQmp {
 public:
  explicit RawQmp(const fs::path& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    for (;;) {
      fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) break;
      ::close(fd_);
      if (Clock::now() > deadline) fail("cannot connect to " + path.string());
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    read_line();  // the greeting
    send("{\"execute\":\"qmp_capabilities\"}\n");
    read_line();
  }
  ~RawQmp() { ::close(fd_); }
  RawQmp(const RawQmp&) = delete;
  RawQmp& operator=(const RawQmp&) = delete;

  void query_status() {
    send("{\"execute\":\"query-status\",\"id\":1}\n");
    for (;;) {
      const std::string line = read_line();
      if (line.find("\"return\"") != std::string::npos) return;
      if (line.find("\"error\"") != std::string::npos) fail("query-status failed: " + line);
    }
  }

 private:
  void send(const std::string& text) {
    if (::write(fd_, text.data(), text.size()) != static_cast<ssize_t>(text.size())) fail("write failed");
  }
  std::string read_line() {
    for (;;) {
      if (auto newline = buffer_.find('\n'); newline != std::string::npos) {
        std::string line = buffer_.substr(0, newline);
        buffer_.erase(0, newline + 1);
        return line;
      }
      char chunk[4096];
      ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail("QMP connection closed");
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  int fd_ = -1;
  std::string buffer_;
};

template <typename Call>
std::vector<long long> time_calls(int count, Call&& call) {
  std::vector<long long> ns;
  ns.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    const auto start = Clock::now();
    call();
    ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
  }
  return ns;
}

long long p99(std::vector<long long> values) {
  std::sort(values.begin(), values.end());
  const auto rank = static_cast<std::size_t>(0.99 * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(rank, values.size() - 1)];
}

void print_block(const char* side, const std::vector<long long>& ns) {
  for (long long value : ns) std::printf("sample\tqmp_rtt.%s\t%lld\tns\n", side, value);
  std::printf("sample\tqmp_rtt_p99.%s\t%lld\tns\n", side, p99(ns));
}

int run(const Options& options) {
  fs::create_directories(options.dir);
  const fs::path qvm_socket = options.dir / "qvm.qmp";
  const fs::path raw_socket = options.dir / "raw.qmp";
  IdleQemu qemu(options.qemu, qvm_socket, raw_socket, options.dir / "qemu.log");

  RawQmp raw(raw_socket);  // waits until QEMU has its sockets up
  QmpSession session(qvm_socket, std::chrono::seconds(10));
  auto qvm_call = [&] { session.execute("query-status", nlohmann::json::object(), std::chrono::seconds(5)); };
  auto raw_call = [&] { raw.query_status(); };
  const bool qvm_side = options.only != "raw";
  const bool raw_side = options.only != "qvm";
  if (qvm_side) time_calls(options.warmup, qvm_call);
  if (raw_side) time_calls(options.warmup, raw_call);
  for (int block = 0; block < options.blocks; ++block) {
    if (!raw_side) {
      print_block("qvm", time_calls(options.calls, qvm_call));
    } else if (!qvm_side) {
      print_block("raw", time_calls(options.calls, raw_call));
    } else if (block % 2 == 0) {
      // ABBA order, so that neither side always runs right after the other.
      print_block("qvm", time_calls(options.calls, qvm_call));
      print_block("raw", time_calls(options.calls, raw_call));
    } else {
      print_block("raw", time_calls(options.calls, raw_call));
      print_block("qvm", time_calls(options.calls, qvm_call));
    }
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace
}  // namespace qvm::bench

int main(int argc, char** argv) {
  try {
    return qvm::bench::run(qvm::bench::parse_options(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qmp_round_trip: %s\n", e.what());
    return 1;
  }
}
