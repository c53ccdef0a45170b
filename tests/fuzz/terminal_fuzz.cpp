// libFuzzer entry point: arbitrary bytes from the guest (its serial console, as `qvm logs`
// and `qvm console` print it on a terminal) through TerminalText, in several splits. The
// guest chooses every byte, so:
//
//  - filtering never throws;
//  - the output is valid UTF-8 with no control character but \n, \r, \t and backspace, no
//    DEL and no C1 control (U+0080..U+009F): nothing a terminal would act on;
//  - every split of the same bytes gives the same output (the reads decide the split);
//  - printable ASCII and valid UTF-8 without controls pass unchanged.
//
// Any other outcome, a crash or a sanitizer report is a finding.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cli/terminal_text.hpp"
#include "finding.hpp"
#include "stream_splits.hpp"

namespace {

using qvm::fuzz::finding;
using qvm::fuzz::guarded;

constexpr std::string_view kTarget = "terminal_fuzz";

// The index of the first byte a terminal could act on (or that is not valid UTF-8), or npos.
std::size_t first_unsafe(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\b') || c == 0x7f) return i;
      ++i;
      continue;
    }
    const std::size_t length = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
    if (c < 0xc2 || c > 0xf4 || i + length > text.size()) return i;
    std::uint32_t point = c & (length == 2 ? 0x1fu : length == 3 ? 0x0fu : 0x07u);
    for (std::size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return i;
      point = (point << 6) | (next & 0x3fu);
    }
    const std::uint32_t least = length == 2 ? 0x80 : length == 3 ? 0x800 : 0x10000;
    if (point < least || point > 0x10ffff || (point >= 0xd800 && point <= 0xdfff) || point <= 0x9f) return i;
    i += length;
  }
  return std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto input = qvm::fuzz::read_split_stream(std::string_view(reinterpret_cast<const char*>(data), size));
  std::string whole;
  bool first = true;
  for (const auto& split : qvm::fuzz::splits_for(input)) {
    std::string out;
    guarded(kTarget, "TerminalText", [&] {
      qvm::cli::TerminalText text;
      std::size_t at = 0;
      for (const std::size_t length : split) {
        out += text.filter(input.stream.substr(at, length));
        at += length;
      }
      out += text.finish();
    });
    if (const std::size_t bad = first_unsafe(out); bad != std::string::npos) {
      finding(kTarget, "left a byte a terminal acts on at " + std::to_string(bad), out);
    }
    if (first) {
      whole = out;
      first = false;
    } else if (out != whole) {
      finding(kTarget, "the output depends on the split", out);
    }
  }
  if (first_unsafe(input.stream) == std::string_view::npos && whole != input.stream) {
    finding(kTarget, "changed text that was safe already", whole);
  }
  return 0;
}
