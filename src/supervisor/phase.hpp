#pragma once

#include <string_view>

namespace qvm::supervisor {

/// Where one VM's supervisor is in the VM's life. Paused is not a phase: a paused guest is
/// `running` here and `paused` in state.json (QEMU's STOP and RESUME events move it).
enum class Phase {
  idle,            // nothing started yet
  launching,       // probing the host, building the command line, spawning QEMU (with -S)
  connecting,      // QEMU spawned, paused; waiting for its QMP socket and greeting
  reattaching,     // took over a QEMU whose supervisor died; asking it what state it is in
  resuming,        // QMP answered; `cont` sent so that the guest CPUs run
  awaiting_ready,  // the guest runs; the profile's [ready] conditions are not met yet
  running,         // ready (or not ready in time, which `up` was told); watched until it stops
  stopping,        // the shutdown ladder or a kill is under way
  restarting,      // QEMU has exited; a new run is scheduled (restart policy, KVM fallback)
  exited,          // the supervisor is done; it may linger until state.json takes the end
};

/// The phase's name as the journal and error messages print it ("awaiting-ready").
std::string_view to_string(Phase phase);

/// True when the supervisor may move from `from` to `to` (the table in phase.cpp). Pure.
bool transition_allowed(Phase from, Phase to);

/// True in the phases of a start: from spawning QEMU until it is ready (or not in time).
bool is_starting(Phase phase);

}  // namespace qvm::supervisor
