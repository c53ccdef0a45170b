#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>

namespace qvm::supervisor {

/// Runs blocking calls (the guest agent client has no asynchronous API) on detached threads
/// and delivers their outcome back on an io_context, so that the loop never waits for them:
/// nothing is ever joined. cancel() (and the destructor) promise that no `done` runs after
/// it; a thread still inside its work ends on its own, as soon as the work looks at its
/// `cancelled` flag or its own timeouts expire, touching nothing but what it captured.
/// Used from the io_context's thread only.
class DetachedWork {
 public:
  using Work = std::function<void(const std::atomic<bool>& cancelled)>;

  explicit DetachedWork(boost::asio::io_context& io);
  ~DetachedWork();
  DetachedWork(const DetachedWork&) = delete;
  DetachedWork& operator=(const DetachedWork&) = delete;

  /// Runs `work` on a new detached thread, then `done(true)` on the io_context if it
  /// returned, `done(false)` if it threw; neither once cancel() was called.
  void run(Work work, std::function<void(bool succeeded)> done);
  /// Drops every outcome still to come and raises the `cancelled` flag of the work running;
  /// later run() calls are not affected.
  void cancel();

 private:
  struct Shared;
  boost::asio::io_context& io_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace qvm::supervisor
