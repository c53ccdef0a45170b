#include <cstdio>
#include <limits>

#include "qmp/qmp_text.hpp"
#include "qvm/qmp.hpp"

namespace qvm {
namespace qmp {

std::string excerpt(std::string_view line) {
  constexpr std::size_t kMax = 80;
  std::string out;
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (out.size() >= kMax) {
      out += "...";
      break;
    }
    const auto byte = static_cast<unsigned char>(line[i]);
    if (byte < 0x20 || byte >= 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    } else {
      out += static_cast<char>(byte);
    }
  }
  return out;
}

std::string format_duration(std::chrono::steady_clock::duration duration) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(duration).count()) +
         " ms";
}

}  // namespace qmp

QmpError::QmpError(std::string command, std::string error_class, std::string desc)
    : Error("QMP command \"" + command + "\" failed: " + error_class + ": " + desc),
      command_(std::move(command)),
      class_(std::move(error_class)),
      desc_(std::move(desc)) {}

namespace {

using nlohmann::json;

// QEMU's own JSON parser refuses deeper nesting (MAX_NESTING in qobject/json-streamer.c);
// the limit also keeps recursive copies and dumps of a hostile message off the stack's end.
constexpr int kMaxNesting = 1024;

[[noreturn]] void protocol_error(std::string_view what, std::string_view line) {
  throw QmpDisconnected("protocol error: " + std::string(what) + ": " + qmp::excerpt(line));
}

bool nested_too_deeply(std::string_view line) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : line) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxNesting) return true;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return false;
}

const json* member(const json& object, const char* key) {
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

std::optional<int> small_int(const json* value) {
  if (value == nullptr || !value->is_number_integer()) return std::nullopt;
  if (value->is_number_unsigned()) {
    const auto v = value->get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(std::numeric_limits<int>::max())) return std::nullopt;
    return static_cast<int>(v);
  }
  const auto v = value->get<std::int64_t>();
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max())
    return std::nullopt;
  return static_cast<int>(v);
}

std::optional<std::int64_t> int64(const json* value) {
  if (value == nullptr || !value->is_number_integer()) return std::nullopt;
  if (value->is_number_unsigned()) {
    const auto v = value->get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return std::nullopt;
    }
    return static_cast<std::int64_t>(v);
  }
  return value->get<std::int64_t>();
}

QmpGreeting parse_greeting(const json& qmp, std::string_view line) {
  constexpr std::string_view kBad = "malformed QMP greeting";
  if (!qmp.is_object()) protocol_error(kBad, line);
  const json* version = member(qmp, "version");
  if (version == nullptr || !version->is_object()) protocol_error(kBad, line);
  const json* qemu = member(*version, "qemu");
  if (qemu == nullptr || !qemu->is_object()) protocol_error(kBad, line);
  QmpGreeting greeting;
  const auto major = small_int(member(*qemu, "major"));
  const auto minor = small_int(member(*qemu, "minor"));
  const auto micro = small_int(member(*qemu, "micro"));
  if (!major || !minor || !micro) protocol_error(kBad, line);
  greeting.major = *major;
  greeting.minor = *minor;
  greeting.micro = *micro;
  if (const json* package = member(*version, "package")) {
    if (!package->is_string()) protocol_error(kBad, line);
    greeting.package = package->get<std::string>();
  }
  const json* capabilities = member(qmp, "capabilities");
  if (capabilities == nullptr || !capabilities->is_array()) protocol_error(kBad, line);
  for (const json& capability : *capabilities) {
    if (!capability.is_string()) protocol_error(kBad, line);
    greeting.capabilities.push_back(capability.get<std::string>());
  }
  return greeting;
}

QmpEvent parse_event(const json& message, std::string_view line) {
  constexpr std::string_view kBad = "malformed QMP event";
  QmpEvent event;
  const json& name = message.at("event");
  if (!name.is_string()) protocol_error(kBad, line);
  event.name = name.get<std::string>();
  if (const json* data = member(message, "data")) {
    if (!data->is_object()) protocol_error(kBad, line);
    event.data = *data;
  }
  // QEMU always sends a timestamp; tolerate its absence (other QMP servers, test doubles)
  // but not a malformed one.
  if (const json* timestamp = member(message, "timestamp")) {
    if (!timestamp->is_object()) protocol_error(kBad, line);
    const auto seconds = int64(member(*timestamp, "seconds"));
    const auto microseconds = int64(member(*timestamp, "microseconds"));
    if (!seconds || !microseconds) protocol_error(kBad, line);
    event.seconds = *seconds;
    event.microseconds = *microseconds;
  }
  event.raw = message;
  return event;
}

}  // namespace

QmpMessage parse_qmp_message(std::string_view line) {
  if (nested_too_deeply(line)) protocol_error("JSON nested too deeply", line);
  json message = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (message.is_discarded()) protocol_error("malformed JSON", line);
  if (!message.is_object()) protocol_error("expected a JSON object", line);

  QmpMessage result;
  if (const json* id = member(message, "id")) result.id = *id;
  if (const json* value = member(message, "return")) {
    result.kind = QmpMessage::Kind::success;
    result.value = *value;
  } else if (const json* error = member(message, "error")) {
    result.kind = QmpMessage::Kind::error;
    const json* error_class = error->is_object() ? member(*error, "class") : nullptr;
    const json* desc = error->is_object() ? member(*error, "desc") : nullptr;
    if (error_class == nullptr || !error_class->is_string() || desc == nullptr ||
        !desc->is_string()) {
      protocol_error("malformed QMP error reply", line);
    }
    result.value = *error;
  } else if (member(message, "event") != nullptr) {
    result.kind = QmpMessage::Kind::event;
    result.event = parse_event(message, line);
    result.value = std::move(message);
  } else if (const json* qmp = member(message, "QMP")) {
    result.kind = QmpMessage::Kind::greeting;
    result.greeting = parse_greeting(*qmp, line);
    result.value = std::move(message);
  } else {
    protocol_error("not a QMP greeting, reply or event", line);
  }
  return result;
}

}  // namespace qvm
