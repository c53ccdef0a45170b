// libFuzzer entry point: arbitrary bytes as a profile through parse_profile, with a file
// checker that says every path exists (so validation goes past the existence checks). The
// only acceptable failure is a ProfileError, and its text must render; anything else (another
// exception, a crash, a sanitizer report) is a bug. A profile that parses must survive the
// round trip parse_profile(to_toml(p), p.source) == p, which `qvm up` relies on when it stores
// the resolved profile and `qvm start` reads it back.
//
// Input layout. Most inputs are plain profile text, so any .toml file is a seed as it is.
// An input whose first byte is 0x01, 0x02 or 0x03 is instead
//   MODE TEXT [\0 OVERRIDE]...
// where each OVERRIDE is one `--set KEY=VALUE` (NUL cannot occur in argv, nor in valid TOML)
// and MODE says how the command line looked:
//   0x01  overrides only
//   0x02  the first OVERRIDE is --name instead
//   0x03  overrides, and the text came from no file (origin "")
//
// Inputs that reach a known toml++ 3.3.0 bug are skipped, so the fuzzer keeps looking for
// new ones: see reaches_toml_unreachable below.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "qvm/profile.hpp"

namespace {

class EveryPathExists final : public qvm::FileChecker {
 public:
  bool exists(const std::filesystem::path&) const override { return true; }
};

constexpr std::size_t kMaxOverrides = 16;

struct FuzzCase {
  std::string_view text;
  std::filesystem::path origin = "/fuzz/vm.toml";
  qvm::ProfileOptions options;
};

FuzzCase read_case(std::string_view bytes) {
  FuzzCase fuzz_case;
  if (bytes.empty() || bytes.front() < 0x01 || bytes.front() > 0x03) {
    fuzz_case.text = bytes;
    return fuzz_case;
  }
  const char mode = bytes.front();
  bytes.remove_prefix(1);
  const std::size_t end = bytes.find('\0');
  fuzz_case.text = bytes.substr(0, end);
  std::string_view rest =
      end == std::string_view::npos ? std::string_view() : bytes.substr(end + 1);
  bool first = true;
  while (end != std::string_view::npos && fuzz_case.options.overrides.size() < kMaxOverrides) {
    const std::size_t next = rest.find('\0');
    const std::string piece(rest.substr(0, next));
    if (first && mode == 0x02) {
      fuzz_case.options.name = piece;
    } else {
      fuzz_case.options.overrides.push_back(piece);
    }
    first = false;
    if (next == std::string_view::npos) break;
    rest.remove_prefix(next + 1);
  }
  if (mode == 0x03) fuzz_case.origin.clear();
  return fuzz_case;
}

// toml++ 3.3.0 (Debian 12) asks is_non_ascii_horizontal_whitespace() about a non-ASCII code
// point it meets outside a string (a bare value or key, a line that starts with one, or after
// a line-ending backslash in a multi-line string), and for most of U+00A1..U+0499,
// U+2C8E..U+3087 and U+FC36..U+FEFE that function reaches __builtin_unreachable(): undefined
// behaviour, which UBSan rightly reports. Fixed upstream (marzer/tomlplusplus#190, #295;
// PR #305). Reproducer: `name = Ж`. Inputs holding such a code point anywhere are skipped;
// other non-ASCII text (€, 中, ...) is still fuzzed.
bool toml_whitespace_check_is_undefined(char32_t c) {
  // The same test as toml++'s generated code, down to its constants.
  if (c < 0xA0 || c > 0xFEFF || c == 0xA0 || c == 0x3000 || c == 0xFEFF) return false;
  const std::uint64_t child = (static_cast<std::uint64_t>(c) - 0xA0) / 0x3FA;
  if ((std::uint64_t{1} << child) & 0x7FFFFFFFFFFFF75Eull) return false;
  return child != 0x05 && child != 0x07;
}

bool reaches_toml_unreachable(std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto lead = static_cast<unsigned char>(text[i]);
    char32_t code_point = 0;
    if (lead >= 0xC0 && lead < 0xE0 && i + 1 < text.size()) {
      code_point =
          (char32_t{lead} & 0x1Fu) << 6 | (static_cast<unsigned char>(text[i + 1]) & 0x3Fu);
    } else if (lead >= 0xE0 && lead < 0xF0 && i + 2 < text.size()) {
      code_point = (char32_t{lead} & 0x0Fu) << 12 |
                   (static_cast<unsigned char>(text[i + 1]) & 0x3Fu) << 6 |
                   (static_cast<unsigned char>(text[i + 2]) & 0x3Fu);
    }
    if (toml_whitespace_check_is_undefined(code_point)) return true;
  }
  return false;
}

bool reaches_toml_unreachable(const FuzzCase& fuzz_case) {
  if (reaches_toml_unreachable(fuzz_case.text)) return true;
  if (fuzz_case.options.name && reaches_toml_unreachable(*fuzz_case.options.name)) return true;
  for (const std::string& text : fuzz_case.options.overrides) {
    if (reaches_toml_unreachable(text)) return true;
  }
  return false;
}

[[noreturn]] void round_trip_failed(const std::string& written, const char* why) {
  std::fprintf(stderr, "profile_fuzz: round trip failed: %s\n--- to_toml(p) ---\n%s\n---\n", why,
               written.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const EveryPathExists files;
  FuzzCase fuzz_case = read_case(std::string_view(reinterpret_cast<const char*>(data), size));
  fuzz_case.options.files = &files;
  if (reaches_toml_unreachable(fuzz_case)) return -1;  // -1: libFuzzer keeps it out of the corpus

  qvm::Profile profile;
  try {
    profile = qvm::parse_profile(fuzz_case.text, fuzz_case.origin, fuzz_case.options);
  } catch (const qvm::ProfileError& error) {
    // What `qvm validate` prints must be computable for every input.
    if (error.diagnostics().empty()) std::abort();
    std::size_t shown = 0;
    for (const qvm::ProfileDiagnostic& diagnostic : error.diagnostics()) {
      shown += diagnostic.to_string().size();
    }
    if (shown == 0 || std::string_view(error.what()).empty()) std::abort();
    return 0;
  }

  const std::string written = qvm::to_toml(profile);
  qvm::ProfileOptions again;
  again.files = &files;
  try {
    if (!(qvm::parse_profile(written, profile.source, again) == profile)) {
      round_trip_failed(written, "the profile read back differs");
    }
  } catch (const qvm::ProfileError& error) {
    std::fprintf(stderr, "profile_fuzz: %s\n", error.what());
    round_trip_failed(written, "the written profile does not parse");
  }
  return 0;
}
