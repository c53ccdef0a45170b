#include "store/layout.hpp"

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "qvm/error.hpp"

namespace qvm::store {
namespace fs = std::filesystem;
namespace {

std::optional<std::string> env_value(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

std::uint64_t fnv1a(std::string_view text, std::uint64_t hash = 0xcbf29ce484222325ull) {
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

// A final avalanche so that names differing in one letter differ in every digit.
std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

std::string hex64(std::uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
  return text;
}

}  // namespace

Environment current_environment() {
  Environment env;
  env.qvm_state_dir = env_value("QVM_STATE_DIR");
  env.xdg_state_home = env_value("XDG_STATE_HOME");
  env.xdg_runtime_dir = env_value("XDG_RUNTIME_DIR");
  env.home = env_value("HOME");
  env.uid = geteuid();
  return env;
}

fs::path state_root(const std::optional<fs::path>& flag, const Environment& env) {
  fs::path root;
  if (flag && !flag->empty()) {
    root = *flag;
  } else if (env.qvm_state_dir) {
    root = *env.qvm_state_dir;
  } else if (env.uid == 0) {
    root = "/var/lib/qvm";
  } else if (env.xdg_state_home && fs::path(*env.xdg_state_home).is_absolute()) {
    root = fs::path(*env.xdg_state_home) / "qvm";
  } else if (env.home && fs::path(*env.home).is_absolute()) {
    root = fs::path(*env.home) / ".local/state/qvm";
  } else {
    throw UsageError("cannot tell where to keep VM state: HOME is not set; pass --state-dir DIR "
                     "or set QVM_STATE_DIR");
  }
  return fs::absolute(root).lexically_normal();
}

fs::path runtime_root(const Environment& env) {
  // Beyond 64 characters a runtime dir would leave too little of sun_path's 108 bytes.
  if (env.xdg_runtime_dir && fs::path(*env.xdg_runtime_dir).is_absolute() &&
      env.xdg_runtime_dir->size() <= 64) {
    return fs::path(*env.xdg_runtime_dir) / "qvm";
  }
  return fs::path("/tmp") / ("qvm-" + std::to_string(env.uid));
}

PrivateDir make_runtime_dir(const fs::path& runtime_dir) {
  make_private_dir(
      runtime_dir.parent_path(),
      "remove it, or set XDG_RUNTIME_DIR to a private folder (an absolute path of at most "
      "64 characters)");
  // The root is this user's alone now, so no one else can have put anything in it.
  return make_private_dir(runtime_dir);
}

RunPaths run_paths(const fs::path& state_root, const fs::path& runtime_root,
                   std::string_view name) {
  std::string key = state_root.string();
  key += '\0';
  key += name;
  RunPaths paths;
  paths.state_dir = vms_dir(state_root) / std::string(name);
  paths.runtime_dir = runtime_root / hex64(mix(fnv1a(key)));
  return paths;
}

std::string derive_uuid(std::string_view host_id, const fs::path& state_root,
                        std::string_view name) {
  std::string key(host_id);
  key += '\0';
  key += state_root.string();
  key += '\0';
  key += name;
  std::uint64_t high = mix(fnv1a(key));
  std::uint64_t low = mix(fnv1a(key, high));
  high = (high & ~0xf000ull) | 0x8000ull;                  // version 8
  low = (low & ~(0xc0ull << 56)) | (0x80ull << 56);        // RFC 9562 variant
  std::string h = hex64(high);
  std::string l = hex64(low);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + l.substr(0, 4) +
         "-" + l.substr(4, 12);
}

std::string host_id() {
  for (const char* file : {"/etc/machine-id", "/var/lib/dbus/machine-id"}) {
    std::ifstream in(file);
    std::string id;
    if (in >> id && !id.empty()) return id;
  }
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) == 0) return name;
  return "unknown-host";
}

}  // namespace qvm::store
