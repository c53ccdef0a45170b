#include "cli/terminal_text.hpp"

#include <ostream>

namespace qvm::cli {
namespace {

void escape_byte(std::string& out, unsigned char byte) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\x";
  out += kHex[byte >> 4];
  out += kHex[byte & 0xf];
}

}  // namespace

void TerminalText::escape_pending(std::string& out) {
  for (const char c : pending_) escape_byte(out, static_cast<unsigned char>(c));
  pending_.clear();
  needed_ = 0;
  low_ = 0x80;
  high_ = 0xbf;
}

std::string TerminalText::filter(std::string_view chunk) {
  std::string out;
  out.reserve(chunk.size());
  for (const char c : chunk) {
    const auto byte = static_cast<unsigned char>(c);
    if (needed_ > 0) {
      if (byte >= low_ && byte <= high_) {
        pending_ += c;
        low_ = 0x80;
        high_ = 0xbf;
        if (--needed_ > 0) continue;
        // U+0080..U+009F are C1 controls: U+009B is CSI to a terminal that honours them.
        const bool c1 = pending_.size() == 2 && static_cast<unsigned char>(pending_[0]) == 0xc2 &&
                        static_cast<unsigned char>(pending_[1]) <= 0x9f;
        if (c1) {
          escape_pending(out);
        } else {
          out += pending_;
          pending_.clear();
        }
        continue;
      }
      // The sequence broke off: its bytes are invalid, and this byte starts afresh.
      escape_pending(out);
    }
    if (byte < 0x20) {
      if (c == '\n' || c == '\r' || c == '\t' || c == '\b') {
        out += c;
      } else {
        out += '^';
        out += static_cast<char>(byte + 0x40);
      }
    } else if (byte < 0x7f) {
      out += c;
    } else if (byte == 0x7f) {
      out += "^?";
    } else {
      // The first byte of a UTF-8 sequence decides how many follow and, for the second,
      // which values keep the form shortest, off the surrogates and below U+110000.
      if (byte >= 0xc2 && byte <= 0xdf) {
        needed_ = 1;
      } else if (byte >= 0xe0 && byte <= 0xef) {
        needed_ = 2;
        if (byte == 0xe0) low_ = 0xa0;
        if (byte == 0xed) high_ = 0x9f;
      } else if (byte >= 0xf0 && byte <= 0xf4) {
        needed_ = 3;
        if (byte == 0xf0) low_ = 0x90;
        if (byte == 0xf4) high_ = 0x8f;
      } else {
        escape_byte(out, byte);
        continue;
      }
      pending_ += c;
    }
  }
  return out;
}

std::string TerminalText::finish() {
  std::string out;
  escape_pending(out);
  return out;
}

std::string neutralise_terminal_text(std::string_view text) {
  TerminalText filter;
  std::string out = filter.filter(text);
  out += filter.finish();
  return out;
}

void TerminalOutput::write(std::string_view chunk) {
  if (neutralise_) {
    const std::string text = text_.filter(chunk);
    out_.write(text.data(), static_cast<std::streamsize>(text.size()));
  } else {
    out_.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  }
  out_.flush();
}

void TerminalOutput::finish() {
  if (!neutralise_) return;
  const std::string text = text_.finish();
  out_.write(text.data(), static_cast<std::streamsize>(text.size()));
  out_.flush();
}

}  // namespace qvm::cli
