#include "supervisor/detached_work.hpp"

#include <boost/asio/post.hpp>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>

namespace qvm::supervisor {

// What a thread shares with the loop. The mutex makes "posted" and "cancelled" exclusive:
// once cancel() has taken it, no thread posts to an io_context that may be gone.
struct DetachedWork::Shared {
  std::mutex mutex;
  boost::asio::io_context* io = nullptr;
  std::atomic<bool> cancelled{false};
};

DetachedWork::DetachedWork(boost::asio::io_context& io) : io_(io), shared_(std::make_shared<Shared>()) {
  shared_->io = &io_;
}

DetachedWork::~DetachedWork() { cancel(); }

void DetachedWork::run(Work work, std::function<void(bool)> done) {
  std::thread([shared = shared_, work = std::move(work), done = std::move(done)]() mutable {
    bool ok = true;
    try {
      work(shared->cancelled);
    } catch (const std::exception&) {
      ok = false;
    }
    std::lock_guard guard(shared->mutex);
    if (shared->cancelled || !shared->io) return;
    boost::asio::post(*shared->io, [shared, done = std::move(done), ok] {
      // Queued before cancel() and run after it: still dropped.
      if (!shared->cancelled) done(ok);
    });
  }).detach();
}

void DetachedWork::cancel() {
  {
    std::lock_guard guard(shared_->mutex);
    shared_->cancelled = true;
    shared_->io = nullptr;
  }
  shared_ = std::make_shared<Shared>();
  shared_->io = &io_;
}

}  // namespace qvm::supervisor
