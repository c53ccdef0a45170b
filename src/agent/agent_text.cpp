#include "agent/agent_text.hpp"

#include <array>
#include <cstdint>
#include <limits>

#include "qmp/qmp_text.hpp"
#include "qvm/qmp.hpp"

namespace qvm::agent {
namespace {

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<std::int8_t, 256> decode_table() {
  std::array<std::int8_t, 256> table{};
  for (auto& entry : table) entry = -1;
  for (std::size_t i = 0; i < kAlphabet.size(); ++i) {
    table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::int8_t>(i);
  }
  return table;
}

constexpr std::array<std::int8_t, 256> kDecode = decode_table();

bool is_space(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16 |
                            static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1]))
                                << 8 |
                            static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += kAlphabet[v >> 6 & 63];
    out += kAlphabet[v & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (rest == 2) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += rest == 2 ? kAlphabet[v >> 6 & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size() / 4 * 3);
  std::uint32_t bits = 0;
  int held = 0;  // sextets in `bits`
  std::size_t padding = 0;
  for (const char c : text) {
    if (is_space(c)) continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    const std::int8_t value = kDecode[static_cast<unsigned char>(c)];
    if (value < 0 || padding > 0) return std::nullopt;  // not base64, or data after padding
    bits = bits << 6 | static_cast<std::uint32_t>(value);
    if (++held == 4) {
      out += static_cast<char>(bits >> 16 & 0xff);
      out += static_cast<char>(bits >> 8 & 0xff);
      out += static_cast<char>(bits & 0xff);
      bits = 0;
      held = 0;
    }
  }
  // A lone sextet cannot make a byte; padding may only complete the last quantum.
  if (held == 1 || padding > 2 || (padding > 0 && held + padding != 4)) return std::nullopt;
  if (held == 2) {
    out += static_cast<char>(bits >> 4 & 0xff);
  } else if (held == 3) {
    out += static_cast<char>(bits >> 10 & 0xff);
    out += static_cast<char>(bits >> 2 & 0xff);
  }
  return out;
}

std::string sh_quote(std::string_view word) {
  std::string out = "'";
  for (const char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += '\'';
  return out;
}

std::string streaming_script(const std::vector<std::string>& argv, std::string_view out_path,
                             std::string_view err_path) {
  // Redirect the shell itself first (so the files are the ones the reader already holds open),
  // then unlink them (nothing is left behind, whatever happens to the reader), then become the
  // command, so that its exit status and signal are the shell's.
  std::string script = "exec >" + sh_quote(out_path) + " 2>" + sh_quote(err_path) +
                       " </dev/null; rm -f -- " + sh_quote(out_path) + " " + sh_quote(err_path) +
                       "; exec";
  for (const std::string& word : argv) script += " " + sh_quote(word);
  return script;
}

std::optional<std::size_t> SyncReplyScanner::scan(std::string_view bytes) {
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const char c = bytes[i];
    if (c == '\xff') {
      delimited_ = true;
      partial_.clear();
    } else if (c != '\n') {
      // Garbage without newlines must not grow without bound; it is skipped anyway.
      if (partial_.size() <= QmpFramer::kMaxLine) partial_ += c;
    } else {
      if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
      const nlohmann::json reply =
          nlohmann::json::parse(partial_, nullptr, /*allow_exceptions=*/false);
      partial_.clear();
      if (!delimited_ || !reply.is_object()) continue;
      const auto value = reply.find("return");
      if (value == reply.end() || *value != id_) continue;
      return i + 1;
    }
  }
  return std::nullopt;
}

namespace {

[[noreturn]] void bad_status(const nlohmann::json& status, std::string_view what) {
  throw AgentDisconnected(
      "protocol error: guest-exec-status returned " + std::string(what) + ": " +
      qmp::excerpt(status.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
}

// The member `key` when present and not null.
const nlohmann::json* member(const nlohmann::json& status, const char* key) {
  const auto it = status.find(key);
  return it == status.end() || it->is_null() ? nullptr : &*it;
}

bool flag(const nlohmann::json& status, const char* key) {
  const nlohmann::json* value = member(status, key);
  if (value == nullptr) return false;
  if (!value->is_boolean()) bad_status(status, "a \"" + std::string(key) + "\" that is no boolean");
  return value->get<bool>();
}

// nlohmann's get<int>() truncates large integers and is undefined for large floats.
std::optional<int> small_int(const nlohmann::json& status, const char* key, std::int64_t low,
                             std::int64_t high) {
  const nlohmann::json* value = member(status, key);
  if (value == nullptr) return std::nullopt;
  const bool fits = value->is_number_unsigned()
                        ? value->get<std::uint64_t>() <= static_cast<std::uint64_t>(high)
                        : value->is_number_integer() && value->get<std::int64_t>() >= low &&
                              value->get<std::int64_t>() <= high;
  if (!fits) bad_status(status, "a \"" + std::string(key) + "\" that is no exit status");
  return static_cast<int>(value->get<std::int64_t>());
}

std::string decode_output(const nlohmann::json& status, const char* key) {
  const nlohmann::json* value = member(status, key);
  if (value == nullptr) return {};
  std::optional<std::string> bytes;
  if (value->is_string()) bytes = base64_decode(value->get_ref<const std::string&>());
  if (!bytes) {
    throw AgentDisconnected(std::string("protocol error: guest-exec-status returned a \"") + key +
                            "\" that is not base64");
  }
  return std::move(*bytes);
}

}  // namespace

// The guest is untrusted: every member is checked before it is used, so that a malformed
// status ends the session with a protocol error instead of a stray json exception or a
// nonsense exit code.
std::optional<AgentExecResult> parse_exec_status(const nlohmann::json& status) {
  if (!status.is_object()) bad_status(status, "no object");
  if (!flag(status, "exited")) return std::nullopt;
  AgentExecResult result;
  // A signal number as WTERMSIG gives it; 128 + signal stays a shell exit status.
  result.signal = small_int(status, "signal", 1, 127);
  result.exit_code = result.signal ? 128 + *result.signal
                                   : small_int(status, "exitcode", std::numeric_limits<int>::min(),
                                               std::numeric_limits<int>::max())
                                         .value_or(0);
  result.out = decode_output(status, "out-data");
  result.err = decode_output(status, "err-data");
  result.out_truncated = flag(status, "out-truncated");
  result.err_truncated = flag(status, "err-truncated");
  return result;
}

}  // namespace qvm::agent
