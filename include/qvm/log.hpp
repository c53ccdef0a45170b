#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>

namespace qvm {

namespace store {
class LogFollower;
}

/// Reads a log that qvm writes and rotates (serial.log, qemu.log, the journal: see
/// Vm::serial_log and friends) as it grows, across rotations: the unread tail of the new
/// `.1` copy, then the current file from its start. One rotation between two reads is
/// followed exactly; after more, the lines in between are lost, never repeated.
/// Not thread-safe: one reader per thread. Movable.
class LogReader {
 public:
  /// Reads from the beginning (the `.1` copy, then the current file). Opens nothing yet.
  explicit LogReader(std::filesystem::path log);
  ~LogReader();
  LogReader(LogReader&&) noexcept;
  LogReader& operator=(LogReader&&) noexcept;

  /// What was written since the last call, at most about `max_bytes` (call again until it
  /// returns ""); "" if nothing is new or the log does not exist yet. Throws qvm::Error if
  /// the log exists but cannot be read.
  std::string read_new(std::size_t max_bytes = std::size_t{16} << 20);

 private:
  std::unique_ptr<store::LogFollower> follower_;
};

}  // namespace qvm
