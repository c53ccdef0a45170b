#include "supervisor/serial_watch.hpp"

#include <fcntl.h>
#include <unistd.h>

namespace qvm::supervisor {
namespace asio = boost::asio;

SerialWatch::SerialWatch(asio::io_context& io, std::filesystem::path file, std::uint64_t offset,
                         std::regex pattern, std::function<void(const std::string&)> on_match)
    : file_(std::move(file)),
      offset_(offset),
      pattern_(std::move(pattern)),
      on_match_(std::move(on_match)),
      watch_(io, file_.parent_path(), std::chrono::milliseconds(250), [this] {
        check();
        return done_;
      }) {}

SerialWatch::~SerialWatch() = default;

void SerialWatch::check() {
  if (done_) return;
  int fd = ::open(file_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buffer[65536];
  bool grew = false;
  for (;;) {
    ssize_t n = ::pread(fd, buffer, sizeof buffer, static_cast<off_t>(offset_));
    if (n <= 0) break;
    offset_ += static_cast<std::uint64_t>(n);
    grew = true;
    std::string_view chunk(buffer, static_cast<std::size_t>(n));
    for (;;) {
      const std::size_t newline = chunk.find('\n');
      line_.append(chunk.substr(0, newline));
      if (line_.size() > kMaxLine) line_.erase(0, line_.size() - kMaxLine);
      if (newline == std::string_view::npos) break;
      if (search_line()) {
        ::close(fd);
        return;
      }
      line_.clear();
      chunk.remove_prefix(newline + 1);
    }
  }
  ::close(fd);
  if (grew && !line_.empty()) search_line();
}

bool SerialWatch::search_line() {
  std::smatch match;
  if (!std::regex_search(line_, match, pattern_)) return false;
  done_ = true;
  watch_.stop();
  on_match_(match.str());
  return true;
}

}  // namespace qvm::supervisor
