#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <string>
#include <system_error>
#include <utility>

#include "profile/diagnostics.hpp"
#include "profile/override_applier.hpp"
#include "profile/reader.hpp"
#include "profile/schema.hpp"
#include "profile/stored_profile.hpp"
#include "profile/toml.hpp"
#include "profile/toml_text.hpp"
#include "qvm/profile.hpp"
#include "qvm/profile_schema.hpp"

namespace qvm {
namespace {

namespace fs = std::filesystem;
using profile::Diagnostics;
using profile::toml_quote;

constexpr std::string_view kNoFile = "<profile>";
constexpr std::size_t kMaxProfileBytes = 1024 * 1024;

// What a stored copy must be, and whose copy it is.
struct StoredCopy {
  std::string vm;
};

// The fix for a stored copy that is not what qvm wrote.
ProfileDiagnostic stored_copy_fix(const std::string& file, const StoredCopy& stored) {
  return ProfileDiagnostic{
      file,
      0,
      0,
      "",
      "this is qvm's stored copy of the profile of VM " + toml_quote(stored.vm) +
          ", which it writes whole; qvm up PROFILE again to re-define the VM, or qvm rm " +
          stored.vm,
      ""};
}

// A stored copy holds every key to_toml writes: its name first and the [qemu] table last,
// so a file that was emptied or cut short, or that belongs to another VM, shows here
// before it can become a VM with default settings.
std::optional<std::string> stored_copy_problem(std::string_view text, const toml::table& document,
                                               const StoredCopy& stored) {
  const toml::node* name = document.get("name");
  if (name == nullptr) return std::string("it has no name (the file is empty or damaged)");
  const std::optional<std::string> value = name->value<std::string>();
  if (!value || *value != stored.vm) {
    return "its name is " + (value ? toml_quote(*value) : std::string("not a string")) +
           ", but it lies in the folder of VM " + toml_quote(stored.vm);
  }
  const toml::table* qemu = document.get_as<toml::table>("qemu");
  if (qemu == nullptr || !qemu->contains("sandbox") || text.empty() || text.back() != '\n') {
    return std::string(
        "it ends before the [qemu] table that qvm writes last (the file was cut short)");
  }
  return std::nullopt;
}

Profile parse_profile_text(std::string_view text, const std::filesystem::path& origin,
                           const ProfileOptions& options, const StoredCopy* stored) {
  const std::string file = origin.empty() ? std::string(kNoFile) : origin.string();
  Diagnostics diagnostics(file, text, options.overrides);
  auto fail = [&]() -> Profile {
    std::vector<ProfileDiagnostic> found = diagnostics.sorted();
    if (stored) found.push_back(stored_copy_fix(file, *stored));
    throw ProfileError(std::move(found));
  };
  toml::table document;
  try {
    document = toml::parse(text);
  } catch (const toml::parse_error& error) {
    diagnostics.report_syntax(error);
    return fail();
  }
  if (stored) {
    if (auto problem = stored_copy_problem(text, document, *stored)) {
      throw ProfileError(
          {ProfileDiagnostic{file, 0, 0, "", *problem, ""}, stored_copy_fix(file, *stored)});
    }
  }

  for (std::size_t i = 0; i < options.overrides.size(); ++i) {
    profile::apply_override(document, diagnostics, i, options.overrides[i]);
  }

  const fs::path source = origin.empty() ? fs::path() : fs::absolute(origin).lexically_normal();
  const fs::path base_dir = origin.empty() ? fs::current_path() : source.parent_path();
  const FileChecker& files = options.files != nullptr ? *options.files : real_file_checker();
  profile::ProfileReader reader(diagnostics, files, base_dir);
  Profile profile = reader.validate(document, origin, options);
  if (!diagnostics.empty()) return fail();
  profile.source = source;
  return profile;
}

std::string read_profile_text(const std::filesystem::path& path) {
  auto fail = [&](std::string message) -> std::string {
    throw ProfileError({ProfileDiagnostic{path.string(), 0, 0, "", std::move(message), ""}});
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return fail("cannot read the profile: " + std::generic_category().message(errno));
  }
  // Read in chunks rather than trusting st_size, so pipes (<(...)) work too.
  std::string text;
  std::array<char, 65536> buffer;
  int error = 0;
  while (text.size() <= kMaxProfileBytes) {
    const ssize_t count = ::read(fd, buffer.data(), buffer.size());
    if (count < 0) {
      if (errno == EINTR) continue;
      error = errno;
      break;
    }
    if (count == 0) break;
    text.append(buffer.data(), static_cast<std::size_t>(count));
  }
  ::close(fd);
  if (error != 0) return fail("cannot read the profile: " + std::generic_category().message(error));
  if (text.size() > kMaxProfileBytes) {
    return fail("the profile is larger than 1 MiB; is this the right file?");
  }
  return text;
}

}  // namespace

nlohmann::json profile_json_schema() {
  return profile::json_schema();
}

Profile parse_profile(std::string_view text, const std::filesystem::path& origin,
                      const ProfileOptions& options) {
  return parse_profile_text(text, origin, options, nullptr);
}

Profile load_profile(const std::filesystem::path& path, const ProfileOptions& options) {
  return parse_profile_text(read_profile_text(path), path, options, nullptr);
}

Profile load_stored_profile(const std::filesystem::path& path, std::string_view vm) {
  const StoredCopy stored{std::string(vm)};
  std::string text;
  try {
    text = read_profile_text(path);
  } catch (const ProfileError& e) {
    std::vector<ProfileDiagnostic> found = e.diagnostics();
    found.push_back(stored_copy_fix(path.string(), stored));
    throw ProfileError(std::move(found));
  }
  return parse_profile_text(text, path, {}, &stored);
}

}  // namespace qvm
