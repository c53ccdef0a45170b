// libFuzzer entry point: arbitrary bytes as what a QMP socket delivers, through QmpFramer and
// parse_qmp_message, the two pieces of the QMP client that see QEMU's bytes.
//
// The framer is fed the same stream in several splits (whole, one byte at a time, chunk sizes
// drawn from the input's hash, and the input's own split: see stream_splits.hpp) and each time
// must return exactly the lines a plain reading of the stream gives: split at "\n", one "\r"
// before it removed, blank lines dropped, the bytes after the last newline pending. A line over
// QmpFramer::kMaxLine must end the session with QmpDisconnected, with no longer line returned
// before; nothing else may make it throw.
//
// Every line then goes through parse_qmp_message, which may only throw QmpDisconnected with a
// printable "protocol error: ..." message; what it accepts must be what the line says (the
// kind, id, return value, error class and desc, event name, data and timestamp, greeting
// version), and must read back the same after being written out again (the event journal).
//
// Input layout: as in stream_splits.hpp, plus one more form for the 16 MiB cap, which no
// input of libFuzzer's size could reach:
//   0x02 D STREAM
// is a line of kMaxLine - 2 + D % 5 'x' bytes followed by STREAM (at most 8 bytes; a longer
// input is a plain stream), fed as one chunk of 'x' bytes, then STREAM byte by byte.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "finding.hpp"
#include "qvm/qmp.hpp"
#include "stream_splits.hpp"

namespace {

using nlohmann::json;
using qvm::QmpFramer;
using qvm::fuzz::finding;

constexpr std::string_view kTarget = "qmp_fuzz";
// The longest STREAM after a 0x02 header; what happens at the cap takes a few bytes to say.
constexpr std::size_t kMaxCapTail = 8;

// What QmpFramer must make of a stream, read plainly rather than the way the framer does it.
struct Framing {
  std::vector<std::string_view> lines;  // complete, non-blank lines without "\n" / "\r\n"
  std::size_t pending = 0;              // bytes after the last newline
  bool overlong = false;                // a line over the cap: the framer must give up
};

bool blank(std::string_view line) {
  return line.find_first_not_of(" \t") == std::string_view::npos;
}

Framing expected_framing(std::string_view stream) {
  Framing framing;
  std::size_t start = 0;
  for (std::size_t newline = stream.find('\n'); newline != std::string_view::npos;
       newline = stream.find('\n', start)) {
    std::string_view line = stream.substr(start, newline - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > QmpFramer::kMaxLine) {
      framing.overlong = true;
      return framing;
    }
    if (!blank(line)) framing.lines.push_back(line);
    start = newline + 1;
  }
  // An unfinished line may hold one byte more than the cap while that byte is a '\r': it may
  // be the start of its "\r\n".
  const std::string_view tail = stream.substr(start);
  if (tail.size() > QmpFramer::kMaxLine + 1 ||
      (tail.size() == QmpFramer::kMaxLine + 1 && tail.back() != '\r')) {
    framing.overlong = true;
    return framing;
  }
  framing.pending = tail.size();
  return framing;
}

void check_disconnect(const qvm::QmpDisconnected& error, std::string_view where) {
  const std::string_view what = error.what();
  if (what.rfind("protocol error: ", 0) != 0 || !qvm::fuzz::printable_ascii(what) ||
      what.size() > 256) {
    finding(kTarget, std::string(where) + " threw an unfit QmpDisconnected", what);
  }
}

// Feeds `stream` to a fresh framer in chunks of `split` and compares with `expected`.
// `exact`: every newline arrives in a feed of its own, so nothing completed before an overlong
// line can be lost with the feed that throws.
void check_framer(std::string_view stream, const std::vector<std::size_t>& split,
                  const Framing& expected, bool exact) {
  QmpFramer framer;
  std::vector<std::string> got;
  bool failed = false;
  std::size_t offset = 0;
  for (const std::size_t size : split) {
    try {
      for (std::string& line : framer.feed(stream.substr(offset, size))) {
        if (line.size() > QmpFramer::kMaxLine) {
          finding(kTarget, "the framer returned a line over the cap",
                  std::to_string(line.size()) + " bytes");
        }
        if (line.find('\n') != std::string::npos) {
          finding(kTarget, "the framer returned a line holding a newline", line);
        }
        got.push_back(std::move(line));
      }
    } catch (const qvm::QmpDisconnected& error) {
      check_disconnect(error, "QmpFramer::feed");
      failed = true;
      break;
    }
    offset += size;
  }
  if (offset != stream.size() && !failed) finding(kTarget, "harness: the split lost bytes");

  if (failed != expected.overlong) {
    finding(kTarget, failed ? "the framer gave up on a stream within the cap"
                            : "the framer accepted a line over the cap");
  }
  if (!failed) {
    if (!std::equal(got.begin(), got.end(), expected.lines.begin(), expected.lines.end())) {
      finding(
          kTarget, "the framer's lines differ from the stream's",
          std::to_string(got.size()) + " lines, expected " + std::to_string(expected.lines.size()));
    }
    if (framer.pending() != expected.pending) {
      finding(kTarget, "pending() is not the unfinished line's size",
              std::to_string(framer.pending()) + ", expected " + std::to_string(expected.pending));
    }
    if (!framer.feed("").empty()) finding(kTarget, "feeding nothing completed a line");
    return;
  }
  // The lines before the overlong one may go with the feed that throws, but none may be
  // invented or reordered.
  const bool prefix = got.size() <= expected.lines.size() &&
                      std::equal(got.begin(), got.end(), expected.lines.begin());
  if (!prefix || (exact && got.size() != expected.lines.size())) {
    finding(kTarget, "lines before an overlong line were changed or lost");
  }
  try {
    framer.feed("{}\n");
    finding(kTarget, "a framer that gave up accepted more bytes");
  } catch (const qvm::QmpDisconnected& error) {
    check_disconnect(error, "QmpFramer::feed after failing");
  }
}

const json* member(const json& object, const char* key) {
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

void expect(bool condition, const char* what, std::string_view line) {
  if (!condition) finding(kTarget, what, line);
}

// Does `message` say what the JSON in `line` says?
void check_meaning(const qvm::QmpMessage& message, std::string_view line) {
  const json whole = json::parse(line, nullptr, /*allow_exceptions=*/false);
  expect(whole.is_object(), "parse_qmp_message accepted a line that is no JSON object", line);
  const json* id = member(whole, "id");
  expect(message.id == (id != nullptr ? *id : json()), "the id is not the line's", line);
  using Kind = qvm::QmpMessage::Kind;
  if (const json* value = member(whole, "return")) {
    expect(message.kind == Kind::success && message.value == *value,
           "a reply was not read as its return value", line);
  } else if (const json* error = member(whole, "error")) {
    expect(message.kind == Kind::error && message.value == *error,
           "an error reply was not read as its error", line);
    const json* error_class = member(message.value, "class");
    const json* desc = member(message.value, "desc");
    expect(
        error_class != nullptr && error_class->is_string() && desc != nullptr && desc->is_string(),
        "an error reply without a string class and desc was accepted", line);
    // What QmpClient makes of it.
    const qvm::QmpError typed("fuzz", error_class->get<std::string>(), desc->get<std::string>());
    expect(typed.desc() == desc->get<std::string>(), "QmpError lost the desc", line);
  } else if (const json* name = member(whole, "event")) {
    expect(message.kind == Kind::event && message.value == whole && message.event.raw == whole,
           "an event was not read as itself", line);
    expect(name->is_string() && message.event.name == name->get<std::string>(),
           "an event's name is not the line's", line);
    const json* data = member(whole, "data");
    expect(message.event.data == (data != nullptr ? *data : json::object()),
           "an event's data is not the line's", line);
    if (const json* timestamp = member(whole, "timestamp")) {
      expect(timestamp->is_object() &&
                 json(message.event.seconds) == timestamp->value("seconds", json()) &&
                 json(message.event.microseconds) == timestamp->value("microseconds", json()),
             "an event's timestamp is not the line's", line);
    }
  } else if (const json* qmp = member(whole, "QMP")) {
    expect(message.kind == Kind::greeting && message.value == whole,
           "a greeting was not read as one", line);
    const json& qemu = qmp->at("version").at("qemu");
    expect(json(message.greeting.major) == qemu.at("major") &&
               json(message.greeting.minor) == qemu.at("minor") &&
               json(message.greeting.micro) == qemu.at("micro"),
           "the greeting's version is not the line's", line);
    expect(json(message.greeting.capabilities) == qmp->at("capabilities"),
           "the greeting's capabilities are not the line's", line);
  } else {
    finding(kTarget, "parse_qmp_message accepted a line with no return, error, event or QMP", line);
  }
}

void check_message(std::string_view line) {
  qvm::QmpMessage message;
  try {
    message = qvm::parse_qmp_message(line);
  } catch (const qvm::QmpDisconnected& error) {
    check_disconnect(error, "parse_qmp_message");
    return;
  }
  check_meaning(message, line);
  // The supervisor journals what it read (events.jsonl) and `qvm events` reads it back.
  const std::string written = message.kind == qvm::QmpMessage::Kind::event
                                  ? message.event.raw.dump()
                                  : json::parse(line).dump();
  qvm::QmpMessage again;
  try {
    again = qvm::parse_qmp_message(written);
  } catch (const qvm::QmpDisconnected& error) {
    finding(kTarget, "a message written out again does not parse", error.what());
  }
  if (again.kind != message.kind || again.id != message.id || again.value != message.value) {
    finding(kTarget, "a message written out again reads back differently", written);
  }
}

// Runs `body`; an exception of any other type than those the API documents is a finding.
template <typename Body>
void guarded(const char* what, Body&& body) {
  try {
    body();
  } catch (const qvm::QmpDisconnected& error) {
    finding(kTarget, std::string(what) + " let a QmpDisconnected escape", error.what());
  } catch (const std::exception& error) {
    finding(kTarget, std::string(what) + " threw " + typeid(error).name(), error.what());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  if (bytes.size() >= 2 && bytes.size() <= 2 + kMaxCapTail && bytes.front() == '\x02') {
    // 16 MiB per input makes these inputs a hundred times slower than the others: one stream
    // buffer for all of them, one framer, no parsing of the 'x' line (it cannot be JSON), and
    // a short STREAM only, so that few of them can enter the corpus.
    static std::string stream;
    const std::size_t run = QmpFramer::kMaxLine - 2 + static_cast<unsigned char>(bytes[1]) % 5;
    const std::string_view tail = bytes.substr(2);
    stream.assign(run, 'x');
    stream.append(tail);
    const Framing expected = expected_framing(stream);
    guarded("the framer", [&] {
      std::vector<std::size_t> split = {run};
      const std::vector<std::size_t> bytewise = qvm::fuzz::byte_split(tail.size());
      split.insert(split.end(), bytewise.begin(), bytewise.end());
      check_framer(stream, split, expected, /*exact=*/true);
    });
    guarded("parse_qmp_message", [&] {
      for (std::size_t i = 1; i < expected.lines.size(); ++i) check_message(expected.lines[i]);
    });
    return 0;
  }

  const qvm::fuzz::SplitStream input = qvm::fuzz::read_split_stream(bytes);
  const Framing expected = expected_framing(input.stream);
  guarded("the framer", [&] {
    const auto splits = qvm::fuzz::splits_for(input);
    for (std::size_t i = 0; i < splits.size(); ++i) {
      check_framer(input.stream, splits[i], expected, /*exact=*/i == 1);
    }
  });
  guarded("parse_qmp_message", [&] {
    for (const std::string_view line : expected.lines) check_message(line);
  });
  return 0;
}
