#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <system_error>

#include "host/host_info.hpp"
#include "qvm/error.hpp"
#include "store/files.hpp"

namespace qvm::host {
namespace fs = std::filesystem;
namespace {

bool is_executable_file(const fs::path& path) {
  std::error_code ec;
  auto status = fs::status(path, ec);
  if (ec || !fs::is_regular_file(status)) return false;
  return (status.permissions() & (fs::perms::owner_exec | fs::perms::group_exec |
                                  fs::perms::others_exec)) != fs::perms::none;
}

// Firmware descriptors are trusted host files, but a broken one must not stop qvm from
// considering the others.
std::optional<UefiFirmware> firmware_from_descriptor(const nlohmann::json& doc) {
  if (!doc.is_object()) return std::nullopt;
  const auto interfaces = doc.value("interface-types", nlohmann::json::array());
  if (std::find(interfaces.begin(), interfaces.end(), "uefi") == interfaces.end()) {
    return std::nullopt;
  }
  const auto features = doc.value("features", nlohmann::json::array());
  for (const char* unwanted : {"requires-smm", "secure-boot", "enrolled-keys", "amd-sev-es"}) {
    if (std::find(features.begin(), features.end(), unwanted) != features.end()) {
      return std::nullopt;
    }
  }
  bool x86_64 = false;
  for (const auto& target : doc.value("targets", nlohmann::json::array())) {
    if (target.is_object() && target.value("architecture", "") == "x86_64") x86_64 = true;
  }
  const auto mapping = doc.value("mapping", nlohmann::json::object());
  if (!x86_64 || !mapping.is_object() || mapping.value("device", "") != "flash") {
    return std::nullopt;
  }
  const auto executable = mapping.value("executable", nlohmann::json::object());
  const auto nvram = mapping.value("nvram-template", nlohmann::json::object());
  if (!executable.is_object() || !nvram.is_object() || executable.value("format", "raw") != "raw" ||
      nvram.value("format", "raw") != "raw") {
    return std::nullopt;
  }
  UefiFirmware firmware{executable.value("filename", ""), nvram.value("filename", "")};
  std::error_code ec;
  if (firmware.code.empty() || firmware.vars_template.empty() ||
      !fs::is_regular_file(firmware.code, ec) || !fs::is_regular_file(firmware.vars_template, ec)) {
    return std::nullopt;
  }
  return firmware;
}

}  // namespace

std::optional<fs::path> find_program(std::string_view binary, std::string_view path_env) {
  if (binary.empty()) return std::nullopt;
  if (binary.find('/') != std::string_view::npos) {
    fs::path path(binary);
    std::error_code ec;
    path = fs::absolute(path, ec);
    if (ec || !is_executable_file(path)) return std::nullopt;
    return path.lexically_normal();
  }
  size_t start = 0;
  while (start <= path_env.size()) {
    size_t end = path_env.find(':', start);
    if (end == std::string_view::npos) end = path_env.size();
    std::string_view dir = path_env.substr(start, end - start);
    // An empty PATH entry means the current directory; qvm never runs what a cwd offers.
    if (!dir.empty() && dir.front() == '/') {
      fs::path candidate = fs::path(dir) / binary;
      if (is_executable_file(candidate)) return candidate;
    }
    start = end + 1;
  }
  return std::nullopt;
}

QemuInfo parse_qemu_help(std::string_view help_output, const fs::path& binary) {
  static const std::regex version_line(R"(^QEMU emulator version (\d+)\.(\d+)\.(\d+)(.*)$)");
  std::string first(help_output.substr(0, help_output.find('\n')));
  std::smatch m;
  if (!std::regex_match(first, m, version_line)) {
    throw HostError(binary.string() + " does not look like QEMU: its -help output starts with \"" +
                    first.substr(0, 80) + "\"");
  }
  QemuInfo info;
  info.binary = binary;
  info.major = std::stoi(m[1].str());
  info.minor = std::stoi(m[2].str());
  info.micro = std::stoi(m[3].str());
  std::string rest = m[4].str();
  info.version_text = m[1].str() + "." + m[2].str() + "." + m[3].str() + rest;
  info.has_sandbox = help_output.find("\n-sandbox ") != std::string_view::npos;
  return info;
}

namespace {

// `binary` looked up as the profile names it; HostError naming the package when missing.
fs::path find_qemu(std::string_view binary) {
  const char* path_env = std::getenv("PATH");
  auto found = find_program(binary, path_env ? path_env : "/usr/local/bin:/usr/bin:/bin");
  if (!found) {
    std::string what = "QEMU binary \"" + std::string(binary) + "\" not found";
    if (binary.find('/') == std::string_view::npos) what += " in PATH";
    throw HostError(what +
                    "; install the qemu-system-x86 package or set [qemu] binary in the profile");
  }
  return *found;
}

// Runs `found -help` and checks the version.
QemuInfo probe_found_qemu(const fs::path& found, const ProgramRunner& run) {
  ProgramOutput out = run({found.string(), "-help"});
  if (out.exit_code != 0) {
    throw HostError(found.string() + " -help failed with exit code " +
                    std::to_string(out.exit_code) + ": " + out.out.substr(0, 200));
  }
  QemuInfo info = parse_qemu_help(out.out, found);
  if (info.major < 7 || (info.major == 7 && info.minor < 2)) {
    throw HostError("QEMU " + info.version_text + " at " + found.string() +
                    " is too old; qvm needs QEMU 7.2 or later");
  }
  return info;
}

}  // namespace

QemuInfo probe_qemu(std::string_view binary, const ProgramRunner& run) {
  return probe_found_qemu(find_qemu(binary), run);
}

namespace {

// What identifies one build of QEMU at `path` without running it.
std::string binary_identity(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return path.string() + ":" + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
         std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

// The cache file in `dir`, if this user alone could have written it: it decides whether
// QEMU gets its sandbox. A symlink, a FIFO or a file of someone else is not read.
std::optional<std::string> read_private_cache(const store::PrivateDir& dir,
                                              const std::string& name) {
  int fd = ::openat(dir.fd(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  struct stat st {};
  std::optional<std::string> text;
  // What probe_qemu writes is under 1 KiB; anything much larger is not its file.
  constexpr off_t kMaxCache = 64 * 1024;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == ::geteuid() &&
      (st.st_mode & 022) == 0 && st.st_size <= kMaxCache) {
    std::string content(static_cast<std::size_t>(st.st_size), '\0');
    ssize_t n = ::pread(fd, content.data(), content.size(), 0);
    if (n == static_cast<ssize_t>(content.size())) text = std::move(content);
  }
  ::close(fd);
  return text;
}

}  // namespace

QemuInfo probe_qemu(std::string_view binary, const ProgramRunner& run, const fs::path& cache_file) {
  const fs::path found = find_qemu(binary);
  const std::string identity = binary_identity(found);
  // The cache lives in the runtime root, which another user may have made first (in /tmp):
  // a folder that is not this user's private one is neither read nor written, and every
  // probe runs -help. Refusing such a root is left to what puts sockets there.
  std::optional<store::PrivateDir> cache_dir;
  if (!identity.empty()) {
    try {
      cache_dir = store::make_private_dir(cache_file.parent_path());
    } catch (const Error&) {
      cache_dir.reset();
    }
  }
  const std::string cache_name = cache_file.filename().string();
  if (cache_dir) {
    const auto text = read_private_cache(*cache_dir, cache_name);
    const auto cached = text ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
    if (cached.is_object() && cached.value("identity", "") == identity) {
      try {
        QemuInfo info;
        info.binary = found;
        info.major = cached.at("major").get<int>();
        info.minor = cached.at("minor").get<int>();
        info.micro = cached.at("micro").get<int>();
        info.version_text = cached.at("version").get<std::string>();
        info.has_sandbox = cached.at("sandbox").get<bool>();
        return info;
      } catch (const nlohmann::json::exception&) {
        // Not what this code writes: probe again below and replace it.
      }
    }
  }
  QemuInfo info = probe_found_qemu(found, run);
  if (cache_dir && identity == binary_identity(found)) {
    const nlohmann::json entry{{"identity", identity},        {"major", info.major},
                               {"minor", info.minor},         {"micro", info.micro},
                               {"version", info.version_text}, {"sandbox", info.has_sandbox}};
    try {
      store::write_file_atomically(*cache_dir, cache_name, entry.dump() + "\n",
                                   fs::perms::owner_read | fs::perms::owner_write,
                                   store::Durability::atomic);
    } catch (const Error&) {
      // A cache that cannot be written only makes the next start slower.
    }
  }
  return info;
}

std::vector<fs::path> default_firmware_descriptor_dirs() {
  return {"/etc/qemu/firmware", "/usr/share/qemu/firmware"};
}

std::optional<UefiFirmware> find_uefi_firmware(const std::vector<fs::path>& descriptor_dirs,
                                               const fs::path& fallback_root) {
  // QEMU's rule: descriptors are ordered by file name across all folders, and a name in
  // an earlier folder hides the same name in later ones.
  std::map<std::string, fs::path> by_name;
  for (const auto& dir : descriptor_dirs) {
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->path().extension() != ".json") continue;
      by_name.emplace(it->path().filename().string(), it->path());
    }
  }
  for (const auto& [name, path] : by_name) {
    std::ifstream in(path);
    auto doc = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (auto firmware = firmware_from_descriptor(doc)) return firmware;
  }
  const std::pair<const char*, const char*> known[] = {
      {"usr/share/OVMF/OVMF_CODE_4M.fd", "usr/share/OVMF/OVMF_VARS_4M.fd"},
      {"usr/share/OVMF/OVMF_CODE.fd", "usr/share/OVMF/OVMF_VARS.fd"},
      {"usr/share/edk2/ovmf/OVMF_CODE.fd", "usr/share/edk2/ovmf/OVMF_VARS.fd"},
  };
  for (const auto& [code, vars] : known) {
    std::error_code ec;
    if (fs::is_regular_file(fallback_root / code, ec) &&
        fs::is_regular_file(fallback_root / vars, ec)) {
      return UefiFirmware{fallback_root / code, fallback_root / vars};
    }
  }
  return std::nullopt;
}

}  // namespace qvm::host
