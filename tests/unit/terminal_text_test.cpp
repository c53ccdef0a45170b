#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "cli/terminal_text.hpp"

// What `logs` and `console` print on a terminal from bytes the guest wrote: every byte value,
// every way UTF-8 can be broken, and every place a stream can be cut into chunks.

namespace qvm::cli {
namespace {

std::string byte(int value) { return std::string(1, static_cast<char>(value)); }

std::string hex(int value) {
  static const char digits[] = "0123456789abcdef";
  return std::string("\\x") + digits[value >> 4] + digits[value & 0xf];
}

// The filter fed `text` in pieces of `step` bytes.
std::string in_chunks(const std::string& text, std::size_t step) {
  TerminalText filter;
  std::string out;
  for (std::size_t at = 0; at < text.size(); at += step) out += filter.filter(std::string_view(text).substr(at, step));
  return out + filter.finish();
}

// True if `text` is valid UTF-8 with no control but \n \r \t \b, no DEL and no C1 control.
bool safe_for_a_terminal(const std::string& text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\b') || c == 0x7f) return false;
      ++i;
      continue;
    }
    std::size_t length = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
    if (c < 0xc2 || c > 0xf4 || i + length > text.size()) return false;
    std::uint32_t point = c & (length == 2 ? 0x1f : length == 3 ? 0x0f : 0x07);
    for (std::size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      point = (point << 6) | (next & 0x3f);
    }
    const std::uint32_t least = length == 2 ? 0x80 : length == 3 ? 0x800 : 0x10000;
    if (point < least || point > 0x10ffff || (point >= 0xd800 && point <= 0xdfff)) return false;
    if (point <= 0x9f) return false;  // C1
    i += length;
  }
  return true;
}

TEST(TerminalTextTest, EverySingleByte) {
  for (int value = 0; value < 256; ++value) {
    SCOPED_TRACE(value);
    const std::string out = neutralise_terminal_text(byte(value));
    if (value == '\n' || value == '\r' || value == '\t' || value == '\b' || (value >= 0x20 && value < 0x7f)) {
      EXPECT_EQ(out, byte(value));
    } else if (value < 0x20) {
      EXPECT_EQ(out, "^" + byte(value + 0x40));
    } else if (value == 0x7f) {
      EXPECT_EQ(out, "^?");
    } else {
      // Alone, no byte from 0x80 up is a character.
      EXPECT_EQ(out, hex(value));
    }
    EXPECT_TRUE(safe_for_a_terminal(out)) << out;
  }
}

TEST(TerminalTextTest, EscapeSequencesAreShownNotObeyed) {
  EXPECT_EQ(neutralise_terminal_text("\x1b[2J\x1b[31mred\x1b[0m\n"), "^[[2J^[[31mred^[[0m\n");
  // A window title, an OSC 52 clipboard write, a device status query that makes the
  // terminal type an answer.
  EXPECT_EQ(neutralise_terminal_text("\x1b]0;owned\x07"), "^[]0;owned^G");
  EXPECT_EQ(neutralise_terminal_text("\x1b]52;c;ZWNobyBoaQ==\x1b\\"), "^[]52;c;ZWNobyBoaQ==^[\\");
  EXPECT_EQ(neutralise_terminal_text("\x1b[6n"), "^[[6n");
  // The one-byte CSI, and the same as UTF-8 (U+009B), which some terminals obey.
  EXPECT_EQ(neutralise_terminal_text("\x9b" "31m"), "\\x9b31m");
  EXPECT_EQ(neutralise_terminal_text("\xc2\x9b" "31m"), "\\xc2\\x9b31m");
  EXPECT_EQ(neutralise_terminal_text(std::string("a\0b", 3)), "a^@b");
}

TEST(TerminalTextTest, LinesTabsAndBackspacesPass) {
  EXPECT_EQ(neutralise_terminal_text("login: root\r\n\tx\b \b\n"), "login: root\r\n\tx\b \b\n");
}

TEST(TerminalTextTest, EveryTwoByteSequence) {
  for (int first = 0xc0; first < 0x100; ++first) {
    for (int second = 0; second < 0x100; ++second) {
      const std::string in = byte(first) + byte(second);
      const std::string out = neutralise_terminal_text(in);
      const bool valid_pair = first >= 0xc2 && first <= 0xdf && second >= 0x80 && second <= 0xbf;
      if (valid_pair && !(first == 0xc2 && second <= 0x9f)) {
        ASSERT_EQ(out, in) << first << " " << second;
      } else if (valid_pair) {
        ASSERT_EQ(out, hex(first) + hex(second)) << "C1 " << second;
      } else {
        ASSERT_EQ(out, neutralise_terminal_text(byte(first)) + neutralise_terminal_text(byte(second)))
            << first << " " << second;
      }
      ASSERT_TRUE(safe_for_a_terminal(out)) << first << " " << second;
    }
  }
}

TEST(TerminalTextTest, ValidUtf8PassesUnchanged) {
  const std::string text =
      "caf\xc3\xa9 \xc2\xa0 \xc2\xbf \xe2\x82\xac \xe4\xb8\xad\xe6\x96\x87 \xed\x9f\xbf \xee\x80\x80 "
      "\xef\xbf\xbd \xf0\x9f\x98\x80 \xf0\x90\x80\x80 \xf4\x8f\xbf\xbf\n";
  EXPECT_EQ(neutralise_terminal_text(text), text);
  for (std::size_t step = 1; step <= 5; ++step) EXPECT_EQ(in_chunks(text, step), text) << step;
}

TEST(TerminalTextTest, InvalidUtf8BecomesHex) {
  // Overlong forms (an overlong ESC among them), surrogates, beyond U+10FFFF, stray and
  // missing continuation bytes: each byte of the broken part alone, what follows afresh.
  EXPECT_EQ(neutralise_terminal_text("\xc0\x9b"), "\\xc0\\x9b");
  EXPECT_EQ(neutralise_terminal_text("\xc1\xbf"), "\\xc1\\xbf");
  EXPECT_EQ(neutralise_terminal_text("\xe0\x80\x9b"), "\\xe0\\x80\\x9b");
  EXPECT_EQ(neutralise_terminal_text("\xf0\x80\x80\x9b"), "\\xf0\\x80\\x80\\x9b");
  EXPECT_EQ(neutralise_terminal_text("\xed\xa0\x80"), "\\xed\\xa0\\x80");
  EXPECT_EQ(neutralise_terminal_text("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");
  EXPECT_EQ(neutralise_terminal_text("\xf5\x80"), "\\xf5\\x80");
  EXPECT_EQ(neutralise_terminal_text("\xe2\x82" "A"), "\\xe2\\x82A");
  EXPECT_EQ(neutralise_terminal_text("\xe2\x82\x1b"), "\\xe2\\x82^[");
  EXPECT_EQ(neutralise_terminal_text("\xe2\xe2\x82\xac"), "\\xe2\xe2\x82\xac");
  EXPECT_EQ(neutralise_terminal_text("\xf0\x9f\x98"), "\\xf0\\x9f\\x98");  // cut off at the end
}

TEST(TerminalTextTest, SplitSequencesWaitForTheRest) {
  TerminalText filter;
  EXPECT_EQ(filter.filter("ab\xe2"), "ab");
  EXPECT_EQ(filter.filter("\x82"), "");
  EXPECT_EQ(filter.filter("\xac" "c"), "\xe2\x82\xac" "c");
  EXPECT_EQ(filter.filter("\xc2"), "");
  EXPECT_EQ(filter.filter("\x9b"), "\\xc2\\x9b");
  EXPECT_EQ(filter.filter("\xf0\x9f"), "");
  EXPECT_EQ(filter.finish(), "\\xf0\\x9f");
  EXPECT_EQ(filter.finish(), "");
  EXPECT_EQ(filter.filter("x"), "x");
}

// Every cut of every sequence of up to three bytes drawn from the bytes that matter gives
// what the whole gives, and that is safe.
TEST(TerminalTextTest, TheOutputNeverDependsOnTheChunks) {
  const std::vector<int> interesting = {0x00, 0x08, 0x0a, 0x1b, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9b, 0x9f,
                                        0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xed, 0xef, 0xf0,
                                        0xf1, 0xf4, 0xf5, 0xff};
  std::vector<std::string> texts;
  for (int a : interesting) {
    for (int b : interesting) {
      for (int c : interesting) {
        texts.push_back(byte(a) + byte(b) + byte(c));
        texts.push_back(byte(a) + byte(b) + byte(c) + "\xbf\x80");
      }
    }
  }
  for (const std::string& text : texts) {
    const std::string whole = neutralise_terminal_text(text);
    ASSERT_TRUE(safe_for_a_terminal(whole)) << whole;
    for (std::size_t cut = 1; cut < text.size(); ++cut) {
      TerminalText filter;
      std::string out = filter.filter(std::string_view(text).substr(0, cut));
      out += filter.filter(std::string_view(text).substr(cut));
      out += filter.finish();
      ASSERT_EQ(out, whole) << "cut at " << cut;
    }
    ASSERT_EQ(in_chunks(text, 1), whole);
  }
}

TEST(TerminalTextTest, OutputNeutralisesOnlyWhenAsked) {
  std::ostringstream shown;
  TerminalOutput terminal(shown, true);
  terminal.write("\x1b[31m\xe2\x82");
  terminal.write("\xac\xf0");
  terminal.finish();
  EXPECT_EQ(shown.str(), "^[[31m\xe2\x82\xac\\xf0");
  std::ostringstream piped;
  TerminalOutput raw(piped, false);
  raw.write("\x1b[31m\xe2\x82");
  raw.write("\xac\xf0");
  raw.finish();
  EXPECT_EQ(piped.str(), "\x1b[31m\xe2\x82\xac\xf0");
}

}  // namespace
}  // namespace qvm::cli
