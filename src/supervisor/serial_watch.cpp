#include "supervisor/serial_watch.hpp"

namespace qvm::supervisor {
namespace asio = boost::asio;

SerialWatch::SerialWatch(asio::io_context& io, std::filesystem::path file, std::uint64_t offset,
                         std::regex pattern, std::function<void(const std::string&)> on_match)
    : file_(std::move(file)),
      follower_(file_, offset),
      pattern_(std::move(pattern)),
      on_match_(std::move(on_match)),
      watch_(io, file_.parent_path(), std::chrono::milliseconds(250), [this] {
        check();
        return done_;
      }) {}

SerialWatch::~SerialWatch() = default;

void SerialWatch::check() {
  if (done_) return;
  bool grew = false;
  for (;;) {
    std::string text;
    try {
      text = follower_.read_new(65536);
    } catch (const std::exception&) {
      break;  // unreadable for now: the next wake-up tries again
    }
    if (text.empty()) break;
    grew = true;
    std::string_view chunk(text);
    for (;;) {
      const std::size_t newline = chunk.find('\n');
      line_.append(chunk.substr(0, newline));
      if (line_.size() > kMaxLine) line_.erase(0, line_.size() - kMaxLine);
      if (newline == std::string_view::npos) break;
      if (search_line()) return;
      line_.clear();
      chunk.remove_prefix(newline + 1);
    }
  }
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
