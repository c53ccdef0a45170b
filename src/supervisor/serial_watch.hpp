#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <regex>
#include <string>

#include "store/log_rotation.hpp"
#include "supervisor/folder_watch.hpp"

namespace qvm::supervisor {

/// Watches a growing log file (the serial console log QEMU appends to) from `offset` on, and
/// calls `on_match` once when `pattern` matches a line appended to it (or the unfinished last
/// line, so a prompt without a newline matches too). Only the last kMaxLine bytes of a line
/// are searched: std::regex recurses per character, and the guest decides how long a line
/// is. Reads across a rotation of the log (store::LogFollower). Wakes on inotify, with a slow timer as a safety net. Single-threaded on `io`;
/// destroying it cancels the watch.
class SerialWatch {
 public:
  static constexpr std::size_t kMaxLine = 4096;

  SerialWatch(boost::asio::io_context& io, std::filesystem::path file, std::uint64_t offset,
              std::regex pattern, std::function<void(const std::string& matched)> on_match);
  ~SerialWatch();
  SerialWatch(const SerialWatch&) = delete;
  SerialWatch& operator=(const SerialWatch&) = delete;

 private:
  void check();
  // Searches line_; on a match finishes the watch, calls on_match_ and returns true.
  bool search_line();

  std::filesystem::path file_;
  store::LogFollower follower_;
  std::regex pattern_;
  std::function<void(const std::string&)> on_match_;
  std::string line_;  // the line being read (its last kMaxLine bytes), where the pattern is searched
  bool done_ = false;
  FolderWatch watch_;  // last: its handlers use the members above
};

}  // namespace qvm::supervisor
