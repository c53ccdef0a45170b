#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "store/unique_fd.hpp"

namespace qvm::store {

/// How large each of a VM's logs (serial.log, qemu.log, events.jsonl) may grow before it is
/// rotated, unless the profile's [logs] max_size says otherwise.
inline constexpr std::uint64_t kDefaultLogMaxSize = std::uint64_t{8} << 20;

/// The one rotated copy of `log`: "<log>.1".
std::filesystem::path rotated_log(const std::filesystem::path& log);

/// If `log` holds `max_size` bytes or more, moves what it holds to `<log>.1` (replacing the
/// previous copy) and removes it from the front of `log` in place, so a writer that keeps
/// it open with O_APPEND (QEMU's serial log and stdout) goes on writing at its new end.
/// Where the file system can collapse a range (ext4, XFS) the whole blocks at the front
/// are cut under the kernel's inode lock and nothing a writer adds is lost (less than a
/// block stays in `log`, and the cut may fall inside a line); without `cut_blocks`, or
/// elsewhere, the file is copied and truncated, and bytes a writer
/// adds between the last read and the truncation are lost. Holds an exclusive flock(2) on
/// `log` meanwhile, so LogFollower and append_to_log never see a rotation half done; if one
/// of them holds it for longer than `patience`, does nothing (the next call rotates). Of a log above twice
/// `max_size` (written before logs were capped) only the last `max_size` bytes are kept.
/// Returns true if it rotated; a missing log is not an error. Throws qvm::Error with the
/// path and the OS reason.
bool rotate_log_if_over(const std::filesystem::path& log, std::uint64_t max_size,
                        std::chrono::milliseconds patience = std::chrono::milliseconds(0),
                        bool cut_blocks = true);

/// Appends `line` and a newline to `log` with one write(2), never in the middle of a
/// rotation, then rotates it if it reached `max_size` (waiting up to 50 ms for readers).
/// Throws qvm::Error (path, reason).
void append_to_log(const std::filesystem::path& log, std::string_view line, std::uint64_t max_size);

/// Reads a log that rotate_log_if_over rotates, in order and without repeats: first the
/// `.1` copy, then the current file, and on each later call what was added since, across
/// rotations (the unread tail of the new `.1`, then the current file from its start). One
/// rotation between two calls is followed exactly; if there were more, the lines of the
/// generations in between are lost, never repeated (nor are lines a rotation of an oversized
/// log dropped from its front). Each call holds a shared flock(2) on the log while it reads,
/// so a reader that calls back to back, without waiting for news, can starve rotations.
/// Not thread-safe; one per reader.
class LogFollower {
 public:
  /// Reads from the beginning (.1, then the current file).
  explicit LogFollower(std::filesystem::path log);
  /// Reads only what the current file gains beyond `offset` (.1 counts as read).
  LogFollower(std::filesystem::path log, std::uint64_t offset);

  /// What was written since the last call, at most about `max_bytes` of the current file
  /// (call again until it returns ""); "" if nothing new or the log does not exist yet.
  /// Throws qvm::Error if the log exists but cannot be read.
  std::string read_new(std::size_t max_bytes = std::size_t{16} << 20);

 private:
  struct FileId {
    dev_t dev = 0;
    ino_t ino = 0;
    friend bool operator==(const FileId&, const FileId&) = default;
  };

  std::filesystem::path log_;
  std::uint64_t offset_ = 0;         // how far the current file has been read
  std::optional<FileId> rotated_id_;  // the .1 file as last seen (a new one means a rotation)
  // That .1 file, kept open: once a rotation replaces it, its inode number would be free for
  // the next .1, which would then look like the one already read.
  UniqueFd rotated_fd_;
  std::string tail_;                 // the last bytes read, to recognise them in a new .1
  bool started_ = false;             // whether the first read (or the offset) set rotated_id_
};

/// The whole log, `.1` first, as one consistent snapshot ("" if neither exists).
std::string read_log_with_rotated(const std::filesystem::path& log);

/// The last `count` non-empty lines of `log` from byte `from` on, joined by newlines (no
/// newline after the last); from the start if `log` is now shorter than `from` (rotated
/// since: what it holds was written later). "" for a missing or unreadable file.
std::string tail_lines(const std::filesystem::path& log, std::size_t count, std::uint64_t from = 0);

}  // namespace qvm::store
