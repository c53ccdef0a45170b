#include "process/run_program.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/readable_pipe.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/process/v2/environment.hpp>
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>
#include <cstdlib>

#include "qvm/error.hpp"

namespace qvm::process {
namespace asio = boost::asio;
namespace bp = boost::process::v2;

host::ProgramOutput run_program(const std::vector<std::string>& argv,
                                std::chrono::milliseconds timeout, std::size_t output_limit) {
  if (argv.empty()) throw Error("run_program: empty argv");
  std::string exe = argv[0];
  if (exe.find('/') == std::string::npos) {
    const char* path = std::getenv("PATH");
    auto found = host::find_program(exe, path ? path : "/usr/bin:/bin");
    if (!found) throw Error("cannot run " + exe + ": not found in PATH");
    exe = found->string();
  }
  asio::io_context ctx;
  asio::readable_pipe output(ctx);
  boost::system::error_code ec;
  bp::process child(ctx, exe, std::vector<std::string>(argv.begin() + 1, argv.end()),
                    bp::process_stdio{nullptr, output, output});
  host::ProgramOutput result;
  std::array<char, 4096> chunk;
  bool timed_out = false;
  asio::steady_timer timer(ctx, timeout);
  timer.async_wait([&](boost::system::error_code wait_ec) {
    if (wait_ec) return;
    timed_out = true;
    boost::system::error_code ignored;
    child.terminate(ignored);
    output.close(ignored);
  });
  std::function<void(boost::system::error_code, std::size_t)> on_read =
      [&](boost::system::error_code read_ec, std::size_t n) {
        if (result.out.size() < output_limit) {
          result.out.append(chunk.data(), std::min(n, output_limit - result.out.size()));
        }
        if (read_ec) {
          timer.cancel();
          return;
        }
        output.async_read_some(asio::buffer(chunk), on_read);
      };
  output.async_read_some(asio::buffer(chunk), on_read);
  ctx.run();
  result.exit_code = child.wait(ec);
  if (timed_out) {
    throw Error(argv[0] + " did not finish within " + std::to_string(timeout.count()) + " ms");
  }
  return result;
}

}  // namespace qvm::process
