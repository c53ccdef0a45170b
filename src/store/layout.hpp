#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "command_line/run_paths.hpp"
#include "store/files.hpp"

namespace qvm::store {

/// The parts of the process environment that decide where qvm keeps its files.
struct Environment {
  std::optional<std::string> qvm_state_dir;    // QVM_STATE_DIR
  std::optional<std::string> xdg_state_home;   // XDG_STATE_HOME
  std::optional<std::string> xdg_runtime_dir;  // XDG_RUNTIME_DIR
  std::optional<std::string> home;             // HOME
  unsigned uid = 0;
};

/// This process's environment.
Environment current_environment();

/// The state root: `flag` (--state-dir), else QVM_STATE_DIR, else $XDG_STATE_HOME/qvm, else
/// ~/.local/state/qvm for users and /var/lib/qvm for root. Always absolute; throws
/// UsageError when nothing usable is set.
std::filesystem::path state_root(const std::optional<std::filesystem::path>& flag,
                                 const Environment& env);

/// The folder for sockets and pidfiles of every VM under `state_root`: $XDG_RUNTIME_DIR/qvm
/// when that is short, else /tmp/qvm-<uid>.
std::filesystem::path runtime_root(const Environment& env);

/// Creates or checks the runtime root (the parent of `runtime_dir`) and `runtime_dir` in it
/// as private folders of this user (see make_private_dir). Another user can make
/// /tmp/qvm-<uid> before qvm does; then this throws qvm::Error naming the folder and the fix
/// (remove it, or set XDG_RUNTIME_DIR) and nothing is created or written there.
PrivateDir make_runtime_dir(const std::filesystem::path& runtime_dir);

/// The files of VM `name`. The runtime dir is runtime_root/<16 hex digits> derived from
/// the state root and the name, so every socket path stays under 108 bytes whatever the
/// length of the state root, and two state roots never share sockets.
RunPaths run_paths(const std::filesystem::path& state_root, const std::filesystem::path& runtime_root,
                   std::string_view name);

/// A UUID (RFC 9562 version 8) derived from `host_id`, the state root and the VM name:
/// stable for one VM on one host, different across hosts and state roots.
std::string derive_uuid(std::string_view host_id, const std::filesystem::path& state_root,
                        std::string_view name);

/// /etc/machine-id, or the hostname when there is none.
std::string host_id();

}  // namespace qvm::store
