#pragma once

#include <iosfwd>
#include <string>
#include <string_view>

namespace qvm::cli {

/// Makes bytes someone else wrote (the guest's console, QEMU's log) safe to print on a
/// terminal: nothing in them can move the cursor, recolour, retitle, query or reprogram it.
///
/// - Printable ASCII, '\n', '\r', '\t' and backspace pass unchanged (a shell's line editing
///   echoes backspaces; '\r' can overwrite a line anyway, so '\b' adds nothing to hide).
/// - Every other C0 control byte and DEL become caret notation, as `cat -v` shows them:
///   ESC is `^[`, BEL `^G`, NUL `^@`, DEL `^?`.
/// - Valid UTF-8 (shortest form, no surrogates, at most U+10FFFF) passes unchanged, except
///   the C1 controls U+0080..U+009F (some terminals obey them as escapes: U+009B is CSI).
/// - Each byte of a C1 control, of invalid UTF-8 (a lone 0x9b, an overlong form, a stray
///   continuation byte) becomes `\xHH` (lower-case hex).
///
/// The output is valid UTF-8 with no control other than '\n', '\r', '\t', '\b'. The filter
/// keeps the start of a UTF-8 sequence split across chunks until the rest arrives, so the
/// result never depends on how the stream was cut. Not thread-safe; one per stream.
class TerminalText {
 public:
  /// The printable form of `chunk`, the next bytes of the stream; may hold back up to three
  /// bytes of an unfinished UTF-8 sequence for the next call.
  std::string filter(std::string_view chunk);
  /// What is still held back at the end of the stream, as `\xHH` per byte; empty if nothing.
  std::string finish();

 private:
  void escape_pending(std::string& out);

  std::string pending_;        // the start of a UTF-8 sequence, 1-3 bytes
  int needed_ = 0;             // continuation bytes still to come
  unsigned char low_ = 0x80;   // the range of the next continuation byte
  unsigned char high_ = 0xbf;
};

/// TerminalText over all of `text` at once: filter() then finish().
std::string neutralise_terminal_text(std::string_view text);

/// Where `logs` and `console` print bytes they did not write: through a TerminalText when
/// `neutralise` is set (stdout is a terminal and no --raw), byte for byte otherwise.
class TerminalOutput {
 public:
  TerminalOutput(std::ostream& out, bool neutralise) : out_(out), neutralise_(neutralise) {}
  /// Writes (the printable form of) `chunk` and flushes.
  void write(std::string_view chunk);
  /// Writes what the filter still holds back; the stream has ended.
  void finish();

 private:
  std::ostream& out_;
  bool neutralise_;
  TerminalText text_;
};

}  // namespace qvm::cli
