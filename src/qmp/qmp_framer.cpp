#include <algorithm>

#include "qvm/qmp.hpp"

namespace qvm {
namespace {

bool is_blank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t'; });
}

}  // namespace

void QmpFramer::fail() {
  // Release the buffered megabytes now: the session is over and the framer with it.
  std::string().swap(partial_);
  failed_ = true;
  throw QmpDisconnected("protocol error: a QMP line exceeded 16 MiB");
}

std::vector<std::string> QmpFramer::feed(std::string_view bytes) {
  if (failed_) throw QmpDisconnected("protocol error: a QMP line exceeded 16 MiB");
  std::vector<std::string> lines;
  while (!bytes.empty()) {
    const std::size_t newline = bytes.find('\n');
    if (newline == std::string_view::npos) {
      // Fail as soon as the cap is passed instead of buffering up to the next newline, which
      // may never come. One extra byte is allowed: it may be the '\r' of a "\r\n".
      const std::size_t held = partial_.size() + bytes.size();
      const char last = bytes.back();
      if (held > kMaxLine + 1 || (held == kMaxLine + 1 && last != '\r')) fail();
      partial_.append(bytes);
      break;
    }
    const std::string_view tail = bytes.substr(0, newline);
    bytes.remove_prefix(newline + 1);
    std::size_t length = partial_.size() + tail.size();
    const bool crlf =
        tail.empty() ? (!partial_.empty() && partial_.back() == '\r') : tail.back() == '\r';
    if (crlf) --length;
    if (length > kMaxLine) fail();

    std::string line = std::move(partial_);
    partial_.clear();
    line.append(tail);
    line.resize(length);
    if (!is_blank(line)) lines.push_back(std::move(line));
  }
  return lines;
}

}  // namespace qvm
