#include "supervisor/phase.hpp"

#include <algorithm>
#include <array>
#include <utility>

namespace qvm::supervisor {
namespace {

// Every move the supervisor makes, in the manner of QEMU's runstate_transitions_def. QEMU can
// exit in every phase in which it runs: that ends in `exited`, or in `restarting` when the
// restart policy (or a KVM start that died: `auto` tries TCG) starts it again.
constexpr std::array kTransitions = {
    std::pair{Phase::idle, Phase::launching},
    std::pair{Phase::idle, Phase::reattaching},
    std::pair{Phase::idle, Phase::exited},  // re-attach found no QEMU

    std::pair{Phase::launching, Phase::connecting},
    std::pair{Phase::launching, Phase::exited},  // no QEMU was started

    std::pair{Phase::connecting, Phase::resuming},
    std::pair{Phase::connecting, Phase::stopping},
    std::pair{Phase::connecting, Phase::restarting},
    std::pair{Phase::connecting, Phase::exited},

    std::pair{Phase::reattaching, Phase::resuming},  // its start had been cut short
    std::pair{Phase::reattaching, Phase::running},
    std::pair{Phase::reattaching, Phase::stopping},
    std::pair{Phase::reattaching, Phase::restarting},
    std::pair{Phase::reattaching, Phase::exited},

    std::pair{Phase::resuming, Phase::awaiting_ready},
    std::pair{Phase::resuming, Phase::running},  // no [ready] condition beyond QMP
    std::pair{Phase::resuming, Phase::stopping},
    std::pair{Phase::resuming, Phase::restarting},
    std::pair{Phase::resuming, Phase::exited},

    std::pair{Phase::awaiting_ready, Phase::running},
    std::pair{Phase::awaiting_ready, Phase::stopping},
    std::pair{Phase::awaiting_ready, Phase::restarting},
    std::pair{Phase::awaiting_ready, Phase::exited},

    std::pair{Phase::running, Phase::stopping},
    std::pair{Phase::running, Phase::restarting},
    std::pair{Phase::running, Phase::exited},

    std::pair{Phase::stopping, Phase::exited},  // a VM stopped on purpose is not restarted

    std::pair{Phase::restarting, Phase::launching},
};

}  // namespace

std::string_view to_string(Phase phase) {
  switch (phase) {
    case Phase::idle: return "idle";
    case Phase::launching: return "launching";
    case Phase::connecting: return "connecting";
    case Phase::reattaching: return "reattaching";
    case Phase::resuming: return "resuming";
    case Phase::awaiting_ready: return "awaiting-ready";
    case Phase::running: return "running";
    case Phase::stopping: return "stopping";
    case Phase::restarting: return "restarting";
    case Phase::exited: return "exited";
  }
  return "idle";
}

bool transition_allowed(Phase from, Phase to) {
  return std::find(kTransitions.begin(), kTransitions.end(), std::pair{from, to}) != kTransitions.end();
}

bool is_starting(Phase phase) {
  return phase == Phase::launching || phase == Phase::connecting || phase == Phase::resuming ||
         phase == Phase::awaiting_ready;
}

}  // namespace qvm::supervisor
