#include "supervisor/state_saver.hpp"

#include <algorithm>
#include <cstdio>
#include <utility>

namespace qvm::supervisor {

namespace {

}  // namespace

StateSaver::StateSaver(boost::asio::io_context& io, Write write, Journal journal, VmState on_disk,
                       std::chrono::milliseconds first_retry, std::chrono::milliseconds max_retry)
    : timer_(io),
      write_(std::move(write)),
      journal_(std::move(journal)),
      on_disk_(on_disk),
      first_retry_(first_retry),
      max_retry_(std::max(first_retry, max_retry)),
      next_retry_(first_retry) {}

std::optional<std::string> StateSaver::save(const VmStatus& status) {
  if (try_write(status)) return std::nullopt;
  return last_error_;
}

bool StateSaver::disk_claims_active() const { return pending_ && is_active(on_disk_); }

void StateSaver::cancel() {
  cancelled_ = true;
  timer_.cancel();
}

bool StateSaver::try_write(const VmStatus& status) {
  try {
    write_(status);
  } catch (const std::exception& e) {
    pending_ = status;
    const bool first = failures_++ == 0;
    const bool changed = last_error_ != e.what();
    last_error_ = e.what();
    // Once per outage (and when the reason changes), not once per retry: the journal is
    // usually on the very disk that is full.
    if (first || changed) {
      std::fprintf(stderr, "qvm supervisor: cannot save the VM's state (kept in memory, retrying): %s\n",
                   last_error_.c_str());
      journal_("QVM_SAVE_FAILED", {{"error", last_error_}, {"state", std::string(to_string(status.state))}});
    }
    arm_retry();
    return false;
  }
  on_disk_ = status.state;
  pending_.reset();
  timer_.cancel();
  next_retry_ = first_retry_;
  if (failures_ > 0) {
    journal_("QVM_SAVE_RECOVERED", {{"failures", failures_}, {"error", last_error_}});
    std::fprintf(stderr, "qvm supervisor: the VM's state is saved again after %d failed attempts\n", failures_);
    failures_ = 0;
    last_error_.clear();
    if (auto done = std::exchange(caught_up_, nullptr)) done();
  }
  return true;
}

void StateSaver::arm_retry() {
  if (cancelled_) return;
  timer_.expires_after(next_retry_);
  next_retry_ = std::min(next_retry_ * 2, max_retry_);
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || cancelled_ || !pending_) return;
    VmStatus newest = *pending_;
    try_write(newest);
  });
}

}  // namespace qvm::supervisor
